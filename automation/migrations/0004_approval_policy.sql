-- Who may decide an approval: the names allowed (a JSON array; NULL means
-- anyone with the operator role), and the name that may not (the person who
-- started the run, when the step refuses self-approval).
ALTER TABLE approvals ADD COLUMN approvers TEXT;
ALTER TABLE approvals ADD COLUMN not_by TEXT;
