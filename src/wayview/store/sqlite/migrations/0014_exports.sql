-- wayview 0014: users' data exports (issue #17): one row per requested zip, moved along by
-- the `export` job. No foreign key to users: a row outlives its user until it expires, so
-- the expiry sweep still finds (and deletes) the zip. AUTOINCREMENT: an id is never reused,
-- so an old download link never names a newer export.
CREATE TABLE exports (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id        INTEGER NOT NULL,
    state          TEXT NOT NULL DEFAULT 'queued'
                   CHECK (state IN ('queued', 'running', 'done', 'failed', 'expired')),
    progress       INTEGER NOT NULL DEFAULT 0,
    total          INTEGER NOT NULL DEFAULT 0,
    size_bytes     INTEGER,
    blob_key       TEXT,
    error          TEXT,
    created_at_ms  INTEGER NOT NULL,
    updated_at_ms  INTEGER NOT NULL,
    finished_at_ms INTEGER,
    expires_at_ms  INTEGER
);
CREATE INDEX exports_user ON exports (user_id, id);
CREATE INDEX exports_expiry ON exports (expires_at_ms) WHERE state = 'done';
