-- wayview 0006: the durable job queue (pipeline issue). Workers claim a queued job whose
-- run_after_ms has passed by setting state = 'running' with a lease; an expired lease means the
-- worker died and the job is claimable again.
CREATE TABLE jobs (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    kind           TEXT NOT NULL,
    payload        TEXT NOT NULL,
    state          TEXT NOT NULL DEFAULT 'queued'
                   CHECK (state IN ('queued', 'running', 'done', 'parked')),
    attempts       INTEGER NOT NULL DEFAULT 0,
    run_after_ms   INTEGER NOT NULL,
    lease_until_ms INTEGER,
    worker         TEXT,
    last_error     TEXT,
    dedupe_key     TEXT,
    created_at_ms  INTEGER NOT NULL,
    updated_at_ms  INTEGER NOT NULL
);
CREATE INDEX jobs_ready ON jobs (state, run_after_ms);
CREATE UNIQUE INDEX jobs_dedupe ON jobs (dedupe_key) WHERE dedupe_key IS NOT NULL AND state <> 'done';
