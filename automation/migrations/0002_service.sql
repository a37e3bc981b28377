-- The long-running service: who owns a run (instance lease), what it guards
-- (cooldown / concurrency key), an optional trigger claim (one run per
-- schedule fire, webhook delivery or idempotency key, across instances), and
-- what is needed to resume it after a crash (the request and the runbook
-- definition it started with).
ALTER TABLE runs ADD COLUMN owner TEXT;
ALTER TABLE runs ADD COLUMN guard_key TEXT;
ALTER TABLE runs ADD COLUMN claim TEXT;
ALTER TABLE runs ADD COLUMN request TEXT;
ALTER TABLE runs ADD COLUMN definition TEXT;
ALTER TABLE runs ADD COLUMN source TEXT;
ALTER TABLE runs ADD COLUMN queued_at TEXT;
ALTER TABLE runs ADD COLUMN cancel_requested_by TEXT;
CREATE UNIQUE INDEX runs_by_claim ON runs (claim);
CREATE INDEX runs_by_guard ON runs (guard_key, started_at);
CREATE INDEX runs_by_owner ON runs (owner, status);

-- A run holding a guard key: at most one per key (concurrency skip/queue),
-- across every instance on this database.
CREATE TABLE run_locks (
    key TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    acquired_at TEXT NOT NULL
);

-- Service instances and their leases (heartbeats). An instance whose
-- heartbeat is older than the lease is dead: its runs are taken over.
CREATE TABLE instances (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    started_at TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL,
    stopped_at TEXT
);

-- The last claimed fire of every schedule (compare-and-set).
CREATE TABLE schedule_fires (
    id TEXT PRIMARY KEY,
    last_fire TEXT NOT NULL,
    owner TEXT,
    claimed_at TEXT NOT NULL
);

-- Silences created through the API (matchers as a JSON list of strings).
CREATE TABLE silences (
    id TEXT PRIMARY KEY,
    matchers TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    ends_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    comment TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- Small durable settings shared by instances (the kill switch).
CREATE TABLE service_state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
