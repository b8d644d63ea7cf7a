-- wayview 0010: users' data exports (issue #17; SQLite 0014): one row per requested zip,
-- moved along by the `export` job. No foreign key to users: a row outlives its user until it
-- expires, so the expiry sweep still finds (and deletes) the zip. Identity ids are never
-- reused, so an old download link never names a newer export.
CREATE TABLE exports (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id        bigint NOT NULL,
    state          text NOT NULL DEFAULT 'queued'
                   CHECK (state IN ('queued', 'running', 'done', 'failed', 'expired')),
    progress       bigint NOT NULL DEFAULT 0,
    total          bigint NOT NULL DEFAULT 0,
    size_bytes     bigint,
    blob_key       text,
    error          text,
    created_at_ms  bigint NOT NULL,
    updated_at_ms  bigint NOT NULL,
    finished_at_ms bigint,
    expires_at_ms  bigint
);
CREATE INDEX exports_user ON exports (user_id, id);
CREATE INDEX exports_expiry ON exports (expires_at_ms) WHERE state = 'done';
