"""wayview.store.columns: the SELECT lists both SQL backends read entities with (the same
column names and order on SQLite and PostgreSQL; each backend converts its own types)."""

from __future__ import annotations

from typing import Any

from wayview.model.entities import UploadSession

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

#: Upload session columns, in the order `upload_session_from_row` reads them.
UPLOAD_SESSION_COLUMNS = (
    "id, user_id, session_key, handle, size, created_at_ms, updated_at_ms, expires_at_ms"
)
#: Upload finishes with their session's handle (`result` is JSON text on SQLite, decoded by
#: the driver on PostgreSQL).
UPLOAD_FINISH_SQL = (
    "SELECT f.id, f.session_id, s.handle, f.user_id, f.file_type, f.organization_id, f.job_id,"
    " f.result, f.created_at_ms FROM upload_finishes f JOIN upload_sessions s"
    " ON s.id = f.session_id"
)


def upload_session_from_row(r: tuple[Any, ...]) -> UploadSession:
    """An UploadSession from a row of `UPLOAD_SESSION_COLUMNS` (same types on both backends)."""
    return UploadSession(id=r[0], user_id=r[1], session_key=r[2], handle=r[3], size=r[4],
                         created_at_ms=r[5], updated_at_ms=r[6], expires_at_ms=r[7])
