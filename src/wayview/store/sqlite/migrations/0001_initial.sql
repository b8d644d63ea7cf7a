-- wayview 0001: the initial schema (SQLite).

-- One id space for every node type (spec §1.3): GET /{id} resolves the kind here.
CREATE TABLE nodes (
    id   INTEGER PRIMARY KEY,
    kind TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    username      TEXT NOT NULL,
    email         TEXT,
    password_hash TEXT,
    created_at_ms INTEGER NOT NULL
);
CREATE UNIQUE INDEX users_username ON users (username COLLATE NOCASE);
CREATE UNIQUE INDEX users_email ON users (email COLLATE NOCASE) WHERE email IS NOT NULL;

CREATE TABLE organizations (
    id          INTEGER PRIMARY KEY,
    slug        TEXT NOT NULL,
    name        TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX organizations_slug ON organizations (slug COLLATE NOCASE);

CREATE TABLE organization_members (
    organization_id INTEGER NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id         INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (organization_id, user_id)
) WITHOUT ROWID;

CREATE TABLE apps (
    id                 INTEGER PRIMARY KEY,
    name               TEXT NOT NULL,
    owner_id           INTEGER REFERENCES users (id),
    scopes             TEXT NOT NULL,
    redirect_uris      TEXT NOT NULL DEFAULT '',
    client_secret_hash TEXT NOT NULL,
    builtin            INTEGER NOT NULL DEFAULT 0,
    disabled           INTEGER NOT NULL DEFAULT 0,
    created_at_ms      INTEGER NOT NULL
);

-- Only SHA-256 hashes of token texts are stored; the text is shown once at creation.
CREATE TABLE tokens (
    token_hash    TEXT PRIMARY KEY,
    kind          TEXT NOT NULL CHECK (kind IN ('client', 'user')),
    app_id        INTEGER NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    user_id       INTEGER REFERENCES users (id) ON DELETE CASCADE,
    scopes        TEXT NOT NULL,
    expires_at_ms INTEGER,
    revoked_at_ms INTEGER,
    created_at_ms INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE sequences (
    id              TEXT PRIMARY KEY,
    creator_id      INTEGER NOT NULL REFERENCES users (id),
    organization_id INTEGER REFERENCES organizations (id),
    created_at_ms   INTEGER NOT NULL
);

CREATE TABLE images (
    id                     INTEGER PRIMARY KEY,
    sequence_id            TEXT NOT NULL REFERENCES sequences (id),
    creator_id             INTEGER NOT NULL REFERENCES users (id),
    organization_id        INTEGER REFERENCES organizations (id),
    captured_at_ms         INTEGER NOT NULL,
    lon                    REAL NOT NULL,
    lat                    REAL NOT NULL,
    altitude_m             REAL,
    compass_angle_deg      REAL,
    computed_lon           REAL,
    computed_lat           REAL,
    computed_altitude_m    REAL,
    computed_compass_deg   REAL,
    camera_type            TEXT NOT NULL,
    camera_parameters      TEXT,
    exif_orientation       INTEGER NOT NULL DEFAULT 1,
    width                  INTEGER NOT NULL,
    height                 INTEGER NOT NULL,
    make                   TEXT,
    model                  TEXT,
    is_pano                INTEGER NOT NULL DEFAULT 0,
    quality_score          REAL,
    -- level-30 S2 leaf cell of (lat, lon), as a signed 64-bit integer (id - 2^64 when >= 2^63)
    s2_leaf                INTEGER NOT NULL,
    content_sha256         TEXT NOT NULL,
    created_at_ms          INTEGER NOT NULL
);
CREATE INDEX images_sequence ON images (sequence_id, captured_at_ms, id);
CREATE INDEX images_creator ON images (creator_id, captured_at_ms, id);
CREATE INDEX images_organization ON images (organization_id, captured_at_ms, id)
    WHERE organization_id IS NOT NULL;
CREATE INDEX images_s2 ON images (s2_leaf);
CREATE INDEX images_sha256 ON images (content_sha256);
CREATE INDEX images_captured ON images (captured_at_ms, id);

-- Bounding-box search. Each image is a degenerate box; rows are rechecked against the
-- exact REAL columns because R*Tree stores float32 bounds.
CREATE VIRTUAL TABLE images_rtree USING rtree (id, min_lon, max_lon, min_lat, max_lat);

CREATE TABLE map_features (
    id                    INTEGER PRIMARY KEY,
    object_value          TEXT NOT NULL,
    object_type           TEXT NOT NULL,
    lon                   REAL NOT NULL,
    lat                   REAL NOT NULL,
    aligned_direction_deg REAL,
    first_seen_at_ms      INTEGER NOT NULL,
    last_seen_at_ms       INTEGER NOT NULL
);
CREATE VIRTUAL TABLE map_features_rtree USING rtree (id, min_lon, max_lon, min_lat, max_lat);

CREATE TABLE detections (
    id             INTEGER PRIMARY KEY,
    image_id       INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    map_feature_id INTEGER REFERENCES map_features (id) ON DELETE SET NULL,
    value          TEXT NOT NULL,
    geometry       TEXT NOT NULL,   -- JSON rings of normalised [u, v] pairs
    created_at_ms  INTEGER NOT NULL
);
CREATE INDEX detections_image ON detections (image_id, id);
CREATE INDEX detections_feature ON detections (map_feature_id) WHERE map_feature_id IS NOT NULL;
