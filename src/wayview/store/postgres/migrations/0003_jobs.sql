-- wayview 0003: the durable job queue and the blob journal (SQLite 0006, 0009). Workers claim
-- a due job with SELECT ... FOR UPDATE SKIP LOCKED and set state = 'running' with a lease; an
-- expired lease means the worker died and the job is claimable again.
CREATE TABLE jobs (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind           text NOT NULL,
    payload        jsonb NOT NULL,
    state          text NOT NULL DEFAULT 'queued'
                   CHECK (state IN ('queued', 'running', 'done', 'parked')),
    attempts       integer NOT NULL DEFAULT 0,
    run_after_ms   bigint NOT NULL,
    lease_until_ms bigint,
    worker         text,
    last_error     text,
    dedupe_key     text,
    created_at_ms  bigint NOT NULL,
    updated_at_ms  bigint NOT NULL
);
-- Claims only look at queued and running jobs: done jobs pile up without slowing them down.
CREATE INDEX jobs_queued ON jobs (run_after_ms, id) WHERE state = 'queued';
CREATE INDEX jobs_running ON jobs (lease_until_ms) WHERE state = 'running';
CREATE INDEX jobs_state ON jobs (state, id);
CREATE UNIQUE INDEX jobs_dedupe ON jobs (dedupe_key) WHERE dedupe_key IS NOT NULL AND state <> 'done';

-- A job records the blob keys (or key prefixes ending in "/") it is about to write before
-- writing them; the entries go once the rows referencing them are stored.
CREATE TABLE blob_journal (
    owner         text NOT NULL,
    key           text NOT NULL,
    created_at_ms bigint NOT NULL,
    PRIMARY KEY (owner, key)
);
