-- wayview 0007: the upload service (spec §8). The bytes of a session live in a file under
-- <data_dir>/uploads/<user_id>/ named by the SHA-256 of the session key; its size is the offset.
-- A row exists from the first POST on; `handle` is the opaque file handle the client gets.
CREATE TABLE upload_sessions (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id       INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    session_key   TEXT NOT NULL,
    handle        TEXT NOT NULL UNIQUE,
    size          INTEGER NOT NULL DEFAULT 0,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    UNIQUE (user_id, session_key)
);
CREATE INDEX upload_sessions_expiry ON upload_sessions (expires_at_ms);

-- One row per finished handle (finish_upload is idempotent per handle); its id is the
-- cluster_id answered to the client. `result` is the JSON outcome of the ingest job.
CREATE TABLE upload_finishes (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id      INTEGER NOT NULL UNIQUE REFERENCES upload_sessions (id) ON DELETE CASCADE,
    user_id         INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    file_type       TEXT NOT NULL,
    organization_id INTEGER REFERENCES organizations (id) ON DELETE SET NULL,
    job_id          INTEGER,
    result          TEXT,
    created_at_ms   INTEGER NOT NULL
);
