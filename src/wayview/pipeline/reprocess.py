"""wayview.pipeline.reprocess: run the perception stages again on stored images.

`wayview reprocess` uses it after a detector was added or improved: for every selected image
the detectors and the quality measure look at its public 2048-px derivative again, its
detections are replaced (one transaction per sequence), its `quality_score` is updated, and
the map features around the sequence are placed again, so features that lost all their
evidence disappear and new ones appear. Blurring is not redone (the public derivatives stay
as they are). Running it twice gives the same result.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from wayview.blobs.base import BlobStore, image_blob_key
from wayview.errors import InvalidInput
from wayview.model.entities import Image, ImageSearch
from wayview.pipeline.perception import (
    Perceiver,
    Perception,
    detections_from,
    update_map_features,
)
from wayview.settings import PipelineSettings
from wayview.store.base import Store

__all__ = ["ReprocessReport", "SfmReprocessReport", "reprocess", "reprocess_sfm"]

log = logging.getLogger("wayview.pipeline")
_PAGE = 2000
#: The whole world, for `reprocess` of every image.
WORLD = (-180.0, -90.0, 180.0, 90.0)


@dataclass
class ReprocessReport:
    """What a reprocess run did."""

    images: int = 0
    sequences: int = 0
    detections: int = 0
    features_written: int = 0
    features_deleted: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)


async def _selected(store: Store, *, sequence_ids: Sequence[str] = (),
                    organization_id: int | None = None) -> AsyncIterator[list[Image]]:
    """Pages of the selected images (a sequence's images may span pages)."""
    if sequence_ids:
        for sequence_id in sequence_ids:
            page = await store.search_images(ImageSearch(sequence_ids=(sequence_id,)))
            if page.items:
                yield page.items
        return
    after: tuple[int, int] | None = None
    while True:
        query = ImageSearch(bbox=None if organization_id is not None else WORLD,
                            organization_id=organization_id, limit=_PAGE, after=after)
        page = await store.search_images(query)
        if page.items:
            yield page.items
        if page.next_after is None:
            return
        after = (page.next_after[0], page.next_after[1])


async def reprocess(settings: PipelineSettings, store: Store, blobs: BlobStore, *,
                    sequence_ids: Sequence[str] = (), organization_id: int | None = None,
                    progress: Callable[[int], None] | None = None) -> ReprocessReport:
    """Rerun detection, quality and map features on the selected stored images (all when
    neither `sequence_ids` nor `organization_id` is given)."""
    perceiver = Perceiver(settings)
    report = ReprocessReport()
    loop = asyncio.get_running_loop()

    def look(image: Image) -> Perception | str:
        try:
            data = blobs.get_bytes(image_blob_key(image.id, "thumb_2048", image.media_version))
        except (OSError, KeyError) as exc:
            return f"cannot read its 2048-px derivative: {exc}"
        try:
            return perceiver.look(data)
        except InvalidInput as exc:
            return f"cannot decode its 2048-px derivative: {exc.message}"

    seen_sequences: set[str] = set()
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="wayview-reprocess") as pool:
        async for page in _selected(store, sequence_ids=sequence_ids,
                                    organization_id=organization_id):
            by_sequence: dict[str, list[Image]] = {}
            for image in page:
                by_sequence.setdefault(image.sequence_id, []).append(image)
            for sequence_id, images in by_sequence.items():
                results = await asyncio.gather(*(loop.run_in_executor(pool, look, im)
                                                 for im in images))
                usable = [(im, r) for im, r in zip(images, results, strict=True)
                          if isinstance(r, Perception)]
                report.skipped.extend((im.id, r) for im, r in zip(images, results, strict=True)
                                      if isinstance(r, str))
                found = [(im.id, f) for im, r in usable for f in r.found]
                ids = await store.reserve_ids("detection", len(found)) if found else []
                rows = [row for (image_id, f), did in zip(found, ids, strict=True)
                        for row in detections_from(image_id, [f], [did])]
                lost = await store.replace_detections([im.id for im, _ in usable], rows)
                await store.set_quality_scores([(im.id, r.quality_score) for im, r in usable])
                changes = await update_map_features(settings, store, [im for im, _ in usable],
                                                    lost)
                report.images += len(usable)
                report.detections += len(rows)
                report.features_written += len(changes.upserts)
                report.features_deleted += len(changes.deletes)
                if sequence_id not in seen_sequences:
                    seen_sequences.add(sequence_id)
                    report.sequences += 1
                if progress is not None:
                    progress(len(images))
    log.info("reprocessed %d images of %d sequences: %d detections", report.images,
             report.sequences, report.detections)
    return report


@dataclass
class SfmReprocessReport:
    """What `reprocess_sfm` did: per sequence, its SfM report (or that it was queued)."""

    sequences: int = 0
    queued: int = 0
    images: int = 0
    registered: int = 0
    fallbacks: list[tuple[str, str, str]] = field(default_factory=list)  # (seq, image, why)


async def reprocess_sfm(settings: PipelineSettings, store: Store, blobs: BlobStore, *,
                        sequence_ids: Sequence[str] = (), organization_id: int | None = None,
                        queue: bool = False, work_root: Path | None = None,
                        progress: Callable[[str, int, int], None] | None = None
                        ) -> SfmReprocessReport:
    """Run structure from motion again on the selected stored sequences (all when neither
    `sequence_ids` nor `organization_id` is given): here, one sequence after the other, or
    with `queue` as `sfm` jobs for the workers.

    Raises:
        InvalidInput: SfM cannot run here (pycolmap is not installed).
    """
    from wayview.pipeline.sfm import sfm_unavailable
    from wayview.pipeline.sfm_job import SFM_JOB, solve_sequence

    reason = sfm_unavailable()
    if reason is not None and not queue:
        raise InvalidInput(f"structure from motion cannot run here: {reason}")
    chosen: dict[str, None] = {}  # in the order first seen
    async for page in _selected(store, sequence_ids=sequence_ids,
                                organization_id=organization_id):
        chosen.update(dict.fromkeys(image.sequence_id for image in page))
    report = SfmReprocessReport()
    for sequence_id in chosen:
        report.sequences += 1
        if queue:
            await store.enqueue_job(SFM_JOB, {"sequence_id": sequence_id},
                                    dedupe_key=f"{SFM_JOB}:{sequence_id}")
            report.queued += 1
            continue
        solved = await solve_sequence(settings, store, blobs, sequence_id, work_root=work_root)
        if solved is None:
            continue
        report.images += solved.images
        report.registered += solved.registered
        report.fallbacks += [(sequence_id, i, why) for i, why in sorted(solved.fallbacks.items())]
        if progress is not None:
            progress(sequence_id, solved.registered, solved.images)
    return report
