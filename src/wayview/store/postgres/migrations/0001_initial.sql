-- wayview 0001: the initial schema (PostgreSQL + PostGIS), equivalent to SQLite 0001-0004 and
-- 0008: nodes, users, organizations, sequences, images, map features, detections and the
-- vector-tile index (wayview.tiles.index), maintained by the store on write.

-- Needs a superuser the first time; a no-op for any role once an operator has created it.
CREATE EXTENSION IF NOT EXISTS postgis;

-- One id space for every node type (spec §1.3): GET /{id} resolves the kind here. Ids are
-- random (wayview.ids.new_id); the primary key arbitrates between concurrent reservations.
CREATE TABLE nodes (
    id   bigint PRIMARY KEY,
    kind text NOT NULL
);

CREATE TABLE users (
    id            bigint PRIMARY KEY,
    username      text NOT NULL,
    email         text,
    password_hash text,
    created_at_ms bigint NOT NULL
);
-- Case-insensitive uniqueness, like SQLite's COLLATE NOCASE; queries compare lower(...).
CREATE UNIQUE INDEX users_username ON users (lower(username));
CREATE UNIQUE INDEX users_email ON users (lower(email)) WHERE email IS NOT NULL;

CREATE TABLE organizations (
    id          bigint PRIMARY KEY,
    slug        text NOT NULL,
    name        text NOT NULL DEFAULT '',
    description text NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX organizations_slug ON organizations (lower(slug));

CREATE TABLE organization_members (
    organization_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id         bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (organization_id, user_id)
);

CREATE TABLE sequences (
    id                   text PRIMARY KEY,
    -- A compact integer per sequence, carried by each image's tile record.
    seq_no               bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    creator_id           bigint NOT NULL REFERENCES users (id),
    organization_id      bigint REFERENCES organizations (id),
    created_at_ms        bigint NOT NULL,
    -- Properties of the sequence's `sequence` tile feature (spec §4.3): its first image.
    first_image_id       bigint,
    first_captured_at_ms bigint,
    is_pano              boolean NOT NULL DEFAULT false
);

CREATE TABLE images (
    id                   bigint PRIMARY KEY,
    sequence_id          text NOT NULL REFERENCES sequences (id),
    sequence_no          bigint NOT NULL,   -- sequences.seq_no of sequence_id
    creator_id           bigint NOT NULL REFERENCES users (id),
    organization_id      bigint REFERENCES organizations (id),
    captured_at_ms       bigint NOT NULL,
    lon                  double precision NOT NULL,
    lat                  double precision NOT NULL,
    geom                 geometry(Point, 4326) NOT NULL
                         GENERATED ALWAYS AS (ST_SetSRID(ST_MakePoint(lon, lat), 4326)) STORED,
    altitude_m           double precision,
    compass_angle_deg    double precision,
    computed_lon         double precision,
    computed_lat         double precision,
    computed_altitude_m  double precision,
    computed_compass_deg double precision,
    camera_type          text NOT NULL,
    camera_parameters    double precision[],
    exif_orientation     integer NOT NULL DEFAULT 1,
    width                integer NOT NULL,
    height               integer NOT NULL,
    make                 text,
    model                text,
    is_pano              boolean NOT NULL DEFAULT false,
    quality_score        double precision,
    -- level-30 S2 leaf cell of (lat, lon), as a signed 64-bit integer (id - 2^64 when >= 2^63)
    s2_leaf              bigint NOT NULL,
    content_sha256       text NOT NULL,
    created_at_ms        bigint NOT NULL,
    -- What the processing pipeline computes (spec §3.2, §6): angle-axis [rx, ry, rz] and bit
    -- flags of the derived blobs (1 = mesh, 2 = sfm_cluster, 4 = image pyramid tiles).
    computed_rotation    double precision[],
    atomic_scale         double precision,
    merge_cc             bigint,
    assets               integer NOT NULL DEFAULT 0,
    -- z26 Morton code of the Web-Mercator position: a tile at zoom z is one contiguous range.
    qk                   bigint NOT NULL,
    -- The compass angle tiles carry: the original, else the direction to the next image.
    tile_compass_deg     integer NOT NULL DEFAULT 0,
    -- The eight integers a tile's `image` layer needs, as 64 big-endian bytes (int8send), so
    -- a tile is one range scan aggregated into one bytea and read with numpy. Generated: it
    -- can never go stale when a column it derives from changes.
    tile_rec             bytea NOT NULL GENERATED ALWAYS AS (
                             int8send(id) || int8send(qk) || int8send(captured_at_ms)
                             || int8send(tile_compass_deg::bigint)
                             || int8send(is_pano::integer::bigint)
                             || int8send(COALESCE(organization_id, 0)) || int8send(creator_id)
                             || int8send(sequence_no)) STORED
);
CREATE INDEX images_sequence ON images (sequence_id, captured_at_ms, id);
CREATE INDEX images_creator ON images (creator_id, captured_at_ms, id);
CREATE INDEX images_organization ON images (organization_id, captured_at_ms, id)
    WHERE organization_id IS NOT NULL;
CREATE INDEX images_s2 ON images (s2_leaf);
CREATE INDEX images_sha256 ON images (content_sha256);
CREATE INDEX images_captured ON images (captured_at_ms, id);
CREATE INDEX images_merge_cc ON images (merge_cc) WHERE merge_cc IS NOT NULL;
-- Bounding-box search (`geom && envelope`), rechecked on the exact lon/lat columns because
-- the index keeps float32 boxes.
CREATE INDEX images_geom ON images USING gist (geom);
-- Tiles: a covering range scan (index-only once vacuumed).
CREATE INDEX images_tile ON images (qk, id) INCLUDE (tile_rec, sequence_no);

CREATE TABLE map_features (
    id                    bigint PRIMARY KEY,
    object_value          text NOT NULL,
    object_type           text NOT NULL,
    lon                   double precision NOT NULL,
    lat                   double precision NOT NULL,
    geom                  geometry(Point, 4326) NOT NULL
                          GENERATED ALWAYS AS (ST_SetSRID(ST_MakePoint(lon, lat), 4326)) STORED,
    aligned_direction_deg double precision,
    first_seen_at_ms      bigint NOT NULL,
    last_seen_at_ms       bigint NOT NULL,
    qk                    bigint NOT NULL
);
CREATE INDEX map_features_geom ON map_features USING gist (geom);
CREATE INDEX map_features_qk ON map_features (object_type, qk, id);

CREATE TABLE detections (
    id             bigint PRIMARY KEY,
    image_id       bigint NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    map_feature_id bigint REFERENCES map_features (id) ON DELETE SET NULL,
    value          text NOT NULL,
    geometry       jsonb NOT NULL,   -- rings of normalised [u, v] pairs
    created_at_ms  bigint NOT NULL
);
CREATE INDEX detections_image ON detections (image_id, id);
CREATE INDEX detections_feature ON detections (map_feature_id) WHERE map_feature_id IS NOT NULL;

-- z0-5 "overview": one image per sequence per grid cell, at most OVERVIEW_PER_CELL sequences
-- per cell; cell = Morton code at zoom z + 5, so a tile is one contiguous cell range.
CREATE TABLE tile_overview (
    z           integer NOT NULL,
    cell        bigint NOT NULL,
    sequence_id text NOT NULL,
    image_id    bigint NOT NULL,
    PRIMARY KEY (z, cell, sequence_id)
);

-- z6-14 "sequence": each sequence's line clipped (with a buffer) and simplified for one tile,
-- as little-endian int32 pairs in tile pixels (wayview.tiles.index.encode_parts).
CREATE TABLE tile_sequence_lines (
    z           integer NOT NULL,
    tile        bigint NOT NULL,   -- Morton code of (x, y) at zoom z
    sequence_id text NOT NULL REFERENCES sequences (id),
    coords      bytea NOT NULL,
    PRIMARY KEY (z, tile, sequence_id)
);

-- Every write bumps the epoch of each tile it touches (all zooms), in the same transaction:
-- rendered tiles are cached under (tile, epoch) and can never be served stale.
CREATE TABLE tile_epochs (
    grp   text NOT NULL,            -- 'images' or 'features'
    z     integer NOT NULL,
    tile  bigint NOT NULL,
    epoch bigint NOT NULL,
    PRIMARY KEY (grp, z, tile)
);
