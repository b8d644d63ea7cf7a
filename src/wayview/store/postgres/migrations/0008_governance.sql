-- wayview 0008: instance roles, organization roles and invitations, the audit log and image
-- reports (issue #17); SQLite 0012.
ALTER TABLE users ADD COLUMN role text;

ALTER TABLE organization_members ADD COLUMN role text NOT NULL DEFAULT 'member';
ALTER TABLE organization_members ADD COLUMN status text NOT NULL DEFAULT 'active';
ALTER TABLE organization_members ADD COLUMN invited_by bigint;
ALTER TABLE organization_members ADD COLUMN created_at_ms bigint NOT NULL DEFAULT 0;
CREATE INDEX organization_members_user ON organization_members (user_id);

-- Append-only. No foreign keys: entries outlive the users, images and organizations they name
-- (the actor's username is copied at write time).
CREATE TABLE audit_log (
    id              bigserial PRIMARY KEY,
    at_ms           bigint NOT NULL,
    actor_id        bigint,
    actor_username  text,
    action          text NOT NULL,
    target_kind     text NOT NULL,
    target_id       text NOT NULL,
    organization_id bigint,
    details         jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_actor ON audit_log (actor_id, id);
CREATE INDEX audit_log_target ON audit_log (target_kind, target_id, id);
CREATE INDEX audit_log_organization ON audit_log (organization_id, id)
    WHERE organization_id IS NOT NULL;

CREATE TABLE reports (
    id              bigserial PRIMARY KEY,
    image_id        bigint NOT NULL,
    reporter_id     bigint NOT NULL,
    reason          text NOT NULL,
    comment         text NOT NULL DEFAULT '',
    owner_id        bigint,
    organization_id bigint,
    status          text NOT NULL DEFAULT 'open',
    resolution      text,
    resolver_id     bigint,
    created_at_ms   bigint NOT NULL,
    resolved_at_ms  bigint
);
CREATE INDEX reports_status ON reports (status, id);
CREATE INDEX reports_image ON reports (image_id, status);
CREATE UNIQUE INDEX reports_open_once ON reports (image_id, reporter_id) WHERE status = 'open';
