-- wayview 0004: the upload service (spec §8; SQLite 0007). Only metadata lives here: the bytes
-- of a session are a staged file; its size is the offset. A row exists from the first POST on;
-- `handle` is the opaque file handle the client gets.
CREATE TABLE upload_sessions (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    session_key   text NOT NULL,
    handle        text NOT NULL UNIQUE,
    size          bigint NOT NULL DEFAULT 0,
    created_at_ms bigint NOT NULL,
    updated_at_ms bigint NOT NULL,
    expires_at_ms bigint NOT NULL,
    UNIQUE (user_id, session_key)
);
CREATE INDEX upload_sessions_expiry ON upload_sessions (expires_at_ms);

-- One row per finished handle (finish_upload is idempotent per handle); its id is the
-- cluster_id answered to the client. `result` is the JSON outcome of the ingest job.
CREATE TABLE upload_finishes (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id      bigint NOT NULL UNIQUE REFERENCES upload_sessions (id) ON DELETE CASCADE,
    user_id         bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    file_type       text NOT NULL,
    organization_id bigint REFERENCES organizations (id) ON DELETE SET NULL,
    job_id          bigint,
    result          jsonb,
    created_at_ms   bigint NOT NULL
);
