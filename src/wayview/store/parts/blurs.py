"""wayview.store.parts.blurs: the blur edits and media versions of images (Store protocol
part, issue #17, re-blur).

An image's `media_version` (a column of the image, read by `get_images`) names the rendering
of its pixels that is served. An edit (`save_blur_edits`) raises the image's `revision`, the
version it will be rendered as; the `reblur` job (`wayview.pipeline.reblur`) writes that
version's blobs and then moves `media_version` forward with `switch_media_version`, which
never moves it backwards, so two renderings finishing in any order leave the newest one live.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from wayview.model.blurs import AutoRegion, BlurEdits, BlurShape


class BlursStore(Protocol):
    """Persistence for images' blur edits and media versions."""

    async def get_blur_edits(self, image_id: int) -> BlurEdits | None:
        """An image's blur edits, or None when none were recorded. Called by
        GET /{image_id}/blurs, the re-blur page and the `reblur` job."""

    async def record_automatic_blurs(self, image_id: int, regions: Sequence[AutoRegion]
                                     ) -> BlurEdits | None:
        """Record what the blurrer found on an image, once: when regions are already
        recorded they are kept (the first recording wins, so the ids an edit names stay
        valid). The image's edits afterwards; None when the image does not exist."""

    async def save_blur_edits(self, image_id: int, added: Sequence[BlurShape],
                              removed: Sequence[str], *, user_id: int | None
                              ) -> BlurEdits | None:
        """Replace an image's added shapes and removed automatic ids, and raise its
        `revision` to one more than the larger of its revision and its media version (one
        atomic step: two edits at once get two revisions). The edits afterwards; None when
        the image does not exist. Called by POST /{image_id}/blurs and the re-blur page."""

    async def switch_media_version(self, image_id: int, version: int) -> bool:
        """Serve `version` of an image's pixels: its `media_version` becomes `version` if it
        is lower (never backwards); whether it changed. Called by the `reblur` job once every
        blob of `version` is written."""

    async def set_blur_error(self, image_id: int, revision: int, error: str | None) -> None:
        """Record why `revision` of an image could not be rendered (None clears it); ignored
        when the image's revision has moved on."""
