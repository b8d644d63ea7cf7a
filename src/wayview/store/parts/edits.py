"""wayview.store.parts.edits: corrections of images, splitting and merging sequences
(Store protocol part, issue #17)."""

from __future__ import annotations

from collections.abc import Sequence as Seq
from typing import Protocol

from wayview.model.entities import EditedImages, ImageCorrection, OriginalValues, SequenceSummary


class EditsStore(Protocol):
    """Persistence for corrections of images, splitting and merging sequences.

    Each edit is one transaction that also rebuilds the tile rows of both image tilesets
    (`mly1_public`, `mly1_computed_public`) of every sequence it touches and bumps the epochs
    of every tile an old or a new position or line is in, at every zoom (as
    `delete_images`): a reader sees the state before or after, never a mix.
    """

    async def correct_images(self, corrections: Seq[ImageCorrection]) -> EditedImages:
        """Set the position, compass angle or capture time of images (None leaves a value).
        The first correction of an image keeps its values as uploaded (`image_originals`);
        a corrected position clears the computed position, a corrected angle the computed
        angle (they are computed again by the caller's job). Unknown ids are ignored; values
        equal to the stored ones change nothing. Called by POST /{image_id}, the sequence
        reorder and `wayview correct`."""

    async def split_sequence(self, sequence_id: str, at_image_id: int,
                             new_sequence_id: str) -> EditedImages:
        """Move `at_image_id` and every later image of the sequence (capture order) to a new
        sequence `new_sequence_id` of the same creator and organization.

        Raises:
            InvalidInput: the image is not in the sequence or is its first one.
            NodeNotFound: the sequence does not exist."""

    async def merge_sequences(self, sequence_id: str, other_id: str) -> EditedImages:
        """Move every image of `other_id` into `sequence_id`; `other_id` is deleted.

        Raises:
            InvalidInput: either is unknown, they are the same, or their creators or
                organizations differ."""

    async def image_originals(self, image_ids: Seq[int]) -> dict[int, OriginalValues]:
        """The values as uploaded of those images that were ever corrected."""

    async def sequences_of(self, creator_id: int, *, limit: int = 500) -> list[SequenceSummary]:
        """A creator's sequences, newest capture first. Called by /account/sequences."""
