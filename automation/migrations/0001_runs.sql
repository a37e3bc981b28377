-- Run history: one row per run, one per step (path = `id`, `loop[2].child`,
-- `on_failure.id`), and approvals waiting for a decision. Portable SQL: the
-- same migration runs on SQLite and PostgreSQL. Times are RFC 3339 UTC text
-- with milliseconds, so they sort as strings.
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    runbook TEXT NOT NULL,
    status TEXT NOT NULL,
    trigger_kind TEXT NOT NULL,
    who TEXT NOT NULL,
    params TEXT NOT NULL,
    parent_run TEXT,
    error TEXT,
    started_at TEXT NOT NULL,
    finished_at TEXT
);
CREATE INDEX runs_by_runbook ON runs (runbook, started_at);
CREATE INDEX runs_by_status ON runs (status);

CREATE TABLE steps (
    run_id TEXT NOT NULL REFERENCES runs (id),
    path TEXT NOT NULL,
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    inputs TEXT NOT NULL,
    outputs TEXT,
    logs TEXT,
    error TEXT,
    attempts BIGINT NOT NULL DEFAULT 0,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    PRIMARY KEY (run_id, path)
);

CREATE TABLE approvals (
    run_id TEXT NOT NULL REFERENCES runs (id),
    step_path TEXT NOT NULL,
    message TEXT NOT NULL,
    status TEXT NOT NULL,
    requested_at TEXT NOT NULL,
    decided_by TEXT,
    decided_at TEXT,
    comment TEXT,
    PRIMARY KEY (run_id, step_path)
);
CREATE INDEX approvals_by_status ON approvals (status);
