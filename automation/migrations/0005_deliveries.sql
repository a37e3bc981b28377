-- Every notification sent about a run (run events, approval requests, the
-- notify step, escalations, interruptions) and its outcome.
CREATE TABLE deliveries (
    run_id TEXT NOT NULL,
    at TEXT NOT NULL,
    channel TEXT NOT NULL,
    event TEXT NOT NULL,
    ok BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    error TEXT
);
CREATE INDEX deliveries_by_run ON deliveries (run_id, at);
