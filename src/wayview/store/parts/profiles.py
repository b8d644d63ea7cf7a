"""wayview.store.parts.profiles: the coverage figures of public profiles (Store protocol part,
issue #18 item 6)."""

from __future__ import annotations

from typing import Protocol

from wayview.model.profiles import Coverage


class ProfilesStore(Protocol):
    """What the public profile pages read."""

    async def coverage_of(self, *, creator_id: int | None = None,
                          organization_id: int | None = None, latest: int = 20,
                          starts: int = 1000) -> Coverage:
        """The public coverage of a creator or of an organization (exactly one is given):
        image and sequence counts, the summed length of the sequences' lines (each through
        its images in capture order, haversine), the capture span, the extent, the `latest`
        sequences by first capture (newest first) and where the `starts` newest sequences
        start. Hidden images count nowhere: a sequence's line runs through its other images,
        as the tiles draw it, and a sequence of hidden images only is left out. One read
        statement (one snapshot). Called by /app/user/{username} and /app/org/{id}."""

    async def organization_contributors(self, organization_id: int, *, limit: int = 20
                                        ) -> list[tuple[str, int]]:
        """(username, public image count) of the users whose sequences the organization
        holds, most images first, then by username. Called by /app/org/{id}."""
