"""wayview.pipeline.delete: deleting images, sequences and whole accounts (issue #17).

A deletion has two halves:

1. **the rows**, at once and atomically (`Store.delete_images`): the images, their detections,
   their tile-index rows and emptied sequences go in one transaction, and the tile epochs of
   every cell that showed them are bumped, so the API and both image tilesets stop showing
   them on the next request;
2. **everything else**, as a durable `delete` job (`run_deletion`): every blob of each image
   (thumbnails, original, private unblurred source, pyramid tiles, mesh), the `sfm_cluster`
   and SfM report of emptied sequences, the shots of deleted images in the clusters of the
   sequences that keep other images, and the map features their detections were evidence of
   (placed again from the remaining evidence, deleted when none is left).

`request_deletion` queues the job *before* it deletes the rows, with everything the job needs
(image ids and their sequences): a process killed in between leaves a job that deletes the
rows itself. Every step is idempotent, so a job taken over after a SIGKILL simply runs again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from wayview.blobs.base import (
    BlobStore,
    cluster_blob_key,
    image_blob_folders,
    sfm_report_key,
)
from wayview.errors import InvalidInput
from wayview.model.entities import FeatureChanges, Image, ImageSearch
from wayview.pipeline.jobs import JobContext, job_handler
from wayview.pipeline.perception import update_map_features
from wayview.pipeline.sfm_assets import decode_cluster, encode_cluster
from wayview.settings import PipelineSettings
from wayview.store.base import Store

__all__ = ["DELETE_JOB", "DeletionReport", "images_of", "request_deletion", "run_deletion"]

log = logging.getLogger("wayview.pipeline")

DELETE_JOB = "delete"
#: Largest number of images one deletion job carries (a bigger request is several jobs).
MAX_IMAGES_PER_JOB = 5000


@dataclass
class DeletionReport:
    """What a deletion did."""

    images: int = 0
    sequences_emptied: list[str] = field(default_factory=list)
    folders_deleted: int = 0
    features_changed: int = 0
    features_deleted: int = 0
    jobs: list[int] = field(default_factory=list)


async def request_deletion(store: Store, image_ids: Sequence[int]) -> DeletionReport:
    """Delete images now (rows, tiles) and queue the durable job that removes the rest.

    The ids must have been checked by the caller (owner or admin); unknown ids are ignored.
    """
    wanted = sorted(set(image_ids))
    images = await store.get_images(wanted)
    report = DeletionReport()
    for start in range(0, len(wanted), MAX_IMAGES_PER_JOB):
        chunk = wanted[start:start + MAX_IMAGES_PER_JOB]
        sequences = sorted({images[i].sequence_id for i in chunk if i in images})
        digest = hashlib.sha256(",".join(map(str, chunk)).encode()).hexdigest()[:24]
        job = await store.enqueue_job(DELETE_JOB, {"image_ids": chunk,
                                                   "sequence_ids": sequences},
                                      dedupe_key=f"{DELETE_JOB}:{digest}")
        report.jobs.append(job.id)
        deleted = await store.delete_images(chunk)
        report.images += len(deleted.image_ids)
        report.sequences_emptied += list(deleted.emptied_sequence_ids)
    log.info("deleted %d images (%d sequences emptied); blobs and features follow in jobs %s",
             report.images, len(report.sequences_emptied), report.jobs)
    return report


async def images_of(store: Store, *, sequence_ids: Sequence[str] = (),
                    username: str | None = None) -> list[int]:
    """The ids of every image of some sequences, or of one user (all pages)."""
    ids: list[int] = []
    for sequence_id in sequence_ids:
        page = await store.search_images(ImageSearch(sequence_ids=(sequence_id,)))
        ids += [im.id for im in page.items]
    if username is not None:
        after: tuple[int, int] | None = None
        while True:
            page = await store.search_images(ImageSearch(creator_username=username,
                                                         limit=2000, after=after))
            ids += [im.id for im in page.items]
            if page.next_after is None:
                break
            after = (page.next_after[0], page.next_after[1])
    return ids


async def run_deletion(settings: PipelineSettings, store: Store, blobs: BlobStore,
                       image_ids: Sequence[int], sequence_ids: Sequence[str]
                       ) -> DeletionReport:
    """The `delete` job: rows (again: a no-op unless the requester died first), blobs,
    clusters and map features. Safe to run any number of times."""
    report = DeletionReport()
    deleted = await store.delete_images(image_ids)
    report.images = len(deleted.image_ids)
    folders = [folder for image_id in image_ids for folder in image_blob_folders(image_id)]
    counts = await asyncio.gather(*(asyncio.to_thread(blobs.delete_folder, folder)
                                    for folder in folders))
    report.folders_deleted = sum(1 for count in counts if count)
    gone = set(image_ids)
    remaining_by_sequence: dict[str, list[Image]] = {}
    for sequence_id in sequence_ids:
        page = await store.search_images(ImageSearch(sequence_ids=(sequence_id,)))
        remaining_by_sequence[sequence_id] = page.items
        if not page.items:
            report.sequences_emptied.append(sequence_id)
            await asyncio.to_thread(blobs.delete, cluster_blob_key(sequence_id))
            await asyncio.to_thread(blobs.delete, sfm_report_key(sequence_id))
        else:
            await asyncio.to_thread(_drop_shots, blobs, sequence_id, gone)
    # Map features: placed again around what remains; those left without evidence go.
    remaining = [im for items in remaining_by_sequence.values() for im in items]
    lost = list(deleted.feature_ids)
    if remaining:
        changes = await update_map_features(settings, store, remaining, lost)
    else:
        evidence = await store.detections_for_features(lost) if lost else {}
        changes = FeatureChanges(deletes=tuple(f for f in lost if not evidence.get(f)))
        if changes.deletes:
            await store.apply_feature_changes(changes)
    report.features_changed = len(changes.upserts)
    report.features_deleted = len(changes.deletes)
    log.info("deletion of %d images: %d blob folders removed, %d sequences emptied, "
             "%d map features moved, %d deleted", len(image_ids), report.folders_deleted,
             len(report.sequences_emptied), report.features_changed, report.features_deleted)
    return report


def _drop_shots(blobs: BlobStore, sequence_id: str, gone: set[int]) -> None:
    """Remove the shots of deleted images from a sequence's cluster (when it has one)."""
    key = cluster_blob_key(sequence_id)
    try:
        data = blobs.get_bytes(key)
    except (KeyError, FileNotFoundError):
        return
    try:
        clusters = decode_cluster(data)
    except ValueError as exc:  # not ours to repair here; the next SfM run rewrites it
        log.warning("sequence %s: cluster unreadable, left as it is: %s", sequence_id, exc)
        return
    changed = False
    for cluster in clusters:
        shots = cluster.get("shots", {})
        for shot_id in [s for s in shots if s.isdigit() and int(s) in gone]:
            del shots[shot_id]
            changed = True
    if changed:
        blobs.put_bytes(key, encode_cluster(clusters))


@job_handler(DELETE_JOB)
async def run_delete_job(ctx: JobContext, payload: dict[str, object]) -> None:
    """The `delete` job: `run_deletion` for `payload["image_ids"]`."""
    ids = payload.get("image_ids")
    sequences = payload.get("sequence_ids", [])
    if (not isinstance(ids, list) or not all(isinstance(i, int) for i in ids)
            or not isinstance(sequences, list)
            or not all(isinstance(s, str) for s in sequences)):
        raise InvalidInput("a delete job needs image_ids (integers) and sequence_ids")
    await run_deletion(ctx.settings.pipeline, ctx.store, ctx.blobs, ids, sequences)
