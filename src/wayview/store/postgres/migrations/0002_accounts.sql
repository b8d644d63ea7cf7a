-- wayview 0002: apps, tokens, web sessions and OAuth authorization codes (SQLite 0001, 0005).
-- Secrets stay hashed: session ids, codes and tokens are stored as SHA-256 of their text.

CREATE TABLE apps (
    id                 bigint PRIMARY KEY,
    name               text NOT NULL,
    owner_id           bigint REFERENCES users (id),
    scopes             text NOT NULL,
    redirect_uris      text NOT NULL DEFAULT '',
    client_secret_hash text NOT NULL,
    builtin            boolean NOT NULL DEFAULT false,
    disabled           boolean NOT NULL DEFAULT false,
    token_gen          bigint,
    secret_gen         bigint,
    public_client      boolean NOT NULL DEFAULT false,
    deleted_at_ms      bigint,
    created_at_ms      bigint NOT NULL
);
CREATE INDEX apps_owner ON apps (owner_id) WHERE owner_id IS NOT NULL;
-- At most one built-in app, even when two processes create it at once.
CREATE UNIQUE INDEX apps_builtin ON apps (builtin) WHERE builtin;

-- Only SHA-256 hashes of token texts are stored; the text is shown once at creation.
CREATE TABLE tokens (
    token_hash    text PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('client', 'user')),
    app_id        bigint NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    user_id       bigint REFERENCES users (id) ON DELETE CASCADE,
    scopes        text NOT NULL,
    expires_at_ms bigint,
    revoked_at_ms bigint,
    code_hash     text,
    created_at_ms bigint NOT NULL
);
CREATE INDEX tokens_code ON tokens (code_hash) WHERE code_hash IS NOT NULL;
CREATE INDEX tokens_user_app ON tokens (user_id, app_id) WHERE user_id IS NOT NULL;

CREATE TABLE web_sessions (
    session_hash  text PRIMARY KEY,
    user_id       bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at_ms bigint NOT NULL,
    expires_at_ms bigint NOT NULL
);
CREATE INDEX web_sessions_user ON web_sessions (user_id);
CREATE INDEX web_sessions_expiry ON web_sessions (expires_at_ms);

CREATE TABLE oauth_codes (
    code_hash      text PRIMARY KEY,
    app_id         bigint NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    user_id        bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    scopes         text NOT NULL,
    redirect_uri   text,
    code_challenge text,
    expires_at_ms  bigint NOT NULL,
    used_at_ms     bigint,
    created_at_ms  bigint NOT NULL
);
CREATE INDEX oauth_codes_expiry ON oauth_codes (expires_at_ms);
