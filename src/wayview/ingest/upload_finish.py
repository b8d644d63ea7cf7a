"""wayview.ingest.upload_finish: `finish_upload` — validate, record, queue (spec §8.4).

What is checked before answering: the file type (E25), the handle belongs to the caller (E24),
organization membership (E26) and, for `mly_bundle_manifest`, that the manifest parses, says
`version` "1" and `upload_type` "images", and names only the caller's handles. Everything else
(image contents, zip structure, video tracks) is the ingest job's work: per-image problems
drop that image, logged in the finish's result.

Idempotent per handle: the first call records the finish and queues one `ingest.upload` job;
later calls answer the same `cluster_id`. The cluster id is graph-style (15–16 digits, minted in
the shared id space like every other id, spec §8.1), not a counter.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wayview.errors import (
    InvalidParameter,
    MissingParameter,
    NotOrganizationMember,
)
from wayview.ingest.upload_sessions import staged_path
from wayview.model.entities import UPLOAD_FILE_TYPES, UploadSession
from wayview.settings import Settings
from wayview.store.base import Store

__all__ = [
    "INGEST_JOB",
    "FinishRequest",
    "finish_upload",
    "parse_finish_request",
    "read_manifest",
]

INGEST_JOB = "ingest.upload"
MANIFEST = "mly_bundle_manifest"
#: Largest manifest read (1000 handles take about 40 kB).
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
_MAX_HANDLE = 200


@dataclass(frozen=True, slots=True)
class FinishRequest:
    """A parsed `finish_upload` body."""

    file_handle: str
    file_type: str
    organization_id: int | None = None


def parse_finish_request(body: Any) -> FinishRequest:
    """Validate the JSON body `{"file_handle", "file_type", "organization_id"?}`.

    >>> parse_finish_request({"file_handle": "h", "file_type": "zip", "organization_id": "12"})
    FinishRequest(file_handle='h', file_type='zip', organization_id=12)
    """
    if not isinstance(body, dict):
        raise InvalidParameter("body", "expected a JSON object")
    handle = body.get("file_handle")
    if handle is None or handle == "":
        raise MissingParameter("file_handle")
    if not isinstance(handle, str) or len(handle) > _MAX_HANDLE:
        raise InvalidParameter("file_handle", "unknown file handle")
    file_type = body.get("file_type")
    if file_type is None or file_type == "":
        raise MissingParameter("file_type")
    if not isinstance(file_type, str) or file_type not in UPLOAD_FILE_TYPES:
        raise InvalidParameter("file_type", str(file_type)[:100])
    return FinishRequest(handle, file_type, _organization_id(body.get("organization_id")))


def _organization_id(value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise InvalidParameter("organization_id", "not an id")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit() \
            and len(value.strip()) <= 19:
        number = int(value.strip())
    else:
        raise InvalidParameter("organization_id", "not an id")
    if not 0 < number < 2**63:
        raise InvalidParameter("organization_id", "not an id")
    return number


def read_manifest(path: Path, *, max_handles: int) -> list[str]:
    """The image handles of a bundle manifest, in order.

    Raises:
        InvalidParameter: (file_handle) the upload is not a valid manifest.
    """
    def bad(reason: str) -> InvalidParameter:
        return InvalidParameter("file_handle", f"not a valid bundle manifest: {reason}")

    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError:
        raise bad("no bytes uploaded") from None
    if len(raw) > MAX_MANIFEST_BYTES:
        raise bad("too large")
    try:
        manifest = json.loads(raw)
    except (ValueError, RecursionError):
        raise bad("not JSON") from None
    if not isinstance(manifest, dict):
        raise bad("not a JSON object")
    if manifest.get("version") != "1":
        raise bad("version must be \"1\"")
    if manifest.get("upload_type") != "images":
        raise bad("upload_type must be \"images\"")
    handles = manifest.get("image_handles")
    if not isinstance(handles, list) or not all(isinstance(h, str) for h in handles):
        raise bad("image_handles must be a list of strings")
    if not handles:
        raise bad("image_handles is empty")
    if len(handles) > max_handles:
        raise bad(f"more than {max_handles} image handles")
    return handles


async def finish_upload(settings: Settings, store: Store, user_id: int,
                        request: FinishRequest) -> int:
    """Record a finish and queue its processing; the cluster id (same for a repeated call).

    Raises:
        InvalidParameter: E24 (unknown handle, or a manifest naming one), an invalid manifest.
        NotOrganizationMember: E26.
    """
    found = await store.upload_sessions_by_handle(user_id, [request.file_handle])
    session = found.get(request.file_handle)
    if session is None:
        raise InvalidParameter("file_handle", "unknown file handle")
    org = request.organization_id
    if org is not None and not await store.is_organization_member(org, user_id):
        raise NotOrganizationMember(org)
    members: list[UploadSession] = [session]
    if request.file_type == MANIFEST:
        handles = await asyncio.to_thread(
            read_manifest, staged_path(settings, user_id, session.session_key),
            max_handles=settings.upload.max_images)
        images = await store.upload_sessions_by_handle(user_id, handles)
        if len(images) != len(set(handles)):
            raise InvalidParameter("file_handle", "the manifest names an unknown file handle")
        members.extend(images.values())
    expires_at_ms = int(time.time() * 1000) + settings.upload.handle_ttl * 1000
    await store.extend_upload_sessions([m.id for m in members], expires_at_ms)
    finish = await store.finish_upload_session(session, file_type=request.file_type,
                                               organization_id=org)
    if finish.job_id is None:
        job = await store.enqueue_job(INGEST_JOB, {"cluster_id": finish.cluster_id},
                                      dedupe_key=f"{INGEST_JOB}:{finish.cluster_id}")
        await store.set_upload_finish_job(finish.cluster_id, job.id)
    return finish.cluster_id
