"""wayview.store.columns: the SELECT lists both SQL backends read entities with (the same
column names and order on SQLite and PostgreSQL; each backend converts its own types)."""

from __future__ import annotations

#: Image columns, in the order the backends' `_image_from_row` read them.
IMAGE_COLUMNS = (
    "i.id, i.sequence_id, i.creator_id, i.captured_at_ms, i.lon, i.lat, i.width, i.height,"
    " i.altitude_m, i.compass_angle_deg, i.camera_type, i.camera_parameters,"
    " i.exif_orientation, i.make, i.model, i.is_pano, i.organization_id, i.quality_score,"
    " i.computed_lon, i.computed_lat, i.computed_altitude_m, i.computed_compass_deg,"
    " i.content_sha256, i.created_at_ms, u.username, i.computed_rotation, i.atomic_scale,"
    " i.merge_cc, i.assets"
)
#: The FROM clause `IMAGE_COLUMNS` needs (the creator's username is a join).
IMAGE_FROM = "images i JOIN users u ON u.id = i.creator_id"
#: Detection columns, in the order `_detection_from_row` reads them.
DETECTION_COLUMNS = "d.id, d.image_id, d.value, d.geometry, d.created_at_ms, d.map_feature_id"
