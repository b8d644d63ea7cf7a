-- wayview 0012: instance roles, organization roles and invitations, the audit log and image
-- reports (issue #17).
ALTER TABLE users ADD COLUMN role TEXT;

ALTER TABLE organization_members ADD COLUMN role TEXT NOT NULL DEFAULT 'member';
ALTER TABLE organization_members ADD COLUMN status TEXT NOT NULL DEFAULT 'active';
ALTER TABLE organization_members ADD COLUMN invited_by INTEGER;
ALTER TABLE organization_members ADD COLUMN created_at_ms INTEGER NOT NULL DEFAULT 0;
CREATE INDEX organization_members_user ON organization_members (user_id);

-- Append-only. No foreign keys: entries outlive the users, images and organizations they name
-- (the actor's username is copied at write time).
CREATE TABLE audit_log (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms           INTEGER NOT NULL,
    actor_id        INTEGER,
    actor_username  TEXT,
    action          TEXT NOT NULL,
    target_kind     TEXT NOT NULL,
    target_id       TEXT NOT NULL,
    organization_id INTEGER,
    details         TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_actor ON audit_log (actor_id, id);
CREATE INDEX audit_log_target ON audit_log (target_kind, target_id, id);
CREATE INDEX audit_log_organization ON audit_log (organization_id, id)
    WHERE organization_id IS NOT NULL;

CREATE TABLE reports (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    image_id        INTEGER NOT NULL,
    reporter_id     INTEGER NOT NULL,
    reason          TEXT NOT NULL,
    comment         TEXT NOT NULL DEFAULT '',
    owner_id        INTEGER,
    organization_id INTEGER,
    status          TEXT NOT NULL DEFAULT 'open',
    resolution      TEXT,
    resolver_id     INTEGER,
    created_at_ms   INTEGER NOT NULL,
    resolved_at_ms  INTEGER
);
CREATE INDEX reports_status ON reports (status, id);
CREATE INDEX reports_image ON reports (image_id, status);
CREATE UNIQUE INDEX reports_open_once ON reports (image_id, reporter_id) WHERE status = 'open';
