-- wayview 0005: web accounts, OAuth authorization codes, app lifecycle (accounts issue).
-- Secrets stay hashed: session ids, codes and tokens are stored as SHA-256 of their text.
ALTER TABLE apps ADD COLUMN token_gen INTEGER;
ALTER TABLE apps ADD COLUMN secret_gen INTEGER;
ALTER TABLE apps ADD COLUMN public_client INTEGER NOT NULL DEFAULT 0;
ALTER TABLE apps ADD COLUMN deleted_at_ms INTEGER;
CREATE INDEX apps_owner ON apps (owner_id) WHERE owner_id IS NOT NULL;

ALTER TABLE tokens ADD COLUMN code_hash TEXT;
CREATE INDEX tokens_code ON tokens (code_hash) WHERE code_hash IS NOT NULL;
CREATE INDEX tokens_user_app ON tokens (user_id, app_id) WHERE user_id IS NOT NULL;

CREATE TABLE web_sessions (
    session_hash  TEXT PRIMARY KEY,
    user_id       INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX web_sessions_user ON web_sessions (user_id);

CREATE TABLE oauth_codes (
    code_hash      TEXT PRIMARY KEY,
    app_id         INTEGER NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    user_id        INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    scopes         TEXT NOT NULL,
    redirect_uri   TEXT,
    code_challenge TEXT,
    expires_at_ms  INTEGER NOT NULL,
    used_at_ms     INTEGER,
    created_at_ms  INTEGER NOT NULL
) WITHOUT ROWID;
