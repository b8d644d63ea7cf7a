"""wayview.server: run the ASGI app under granian (one or several worker processes)."""

from __future__ import annotations

import os

from wayview.settings import Settings


def run_server(settings: Settings) -> None:
    """Serve until interrupted. Settings reach the worker processes as JSON in the environment."""
    from granian import Granian
    from granian.constants import Interfaces

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    os.environ["WAYVIEW_SERVER_SETTINGS"] = settings.model_dump_json()
    Granian(
        "wayview.api.app:app_from_env",
        factory=True,
        address=settings.host,
        port=settings.port,
        interface=Interfaces.ASGI,
        workers=settings.workers,
        log_access=False,  # our own access log redacts tokens
        log_level=settings.log_level.lower(),  # type: ignore[arg-type]
    ).serve()
