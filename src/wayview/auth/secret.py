"""wayview.auth.secret: the server's own secret key (signs session cookies, CSRF tokens and
derives built-in tokens such as the embed page's).

Taken from the `secret_key` setting when set (every process of a deployment must share it),
otherwise generated once into `<data_dir>/secret_key` (mode 0600) and read back from there.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from wayview.settings import Settings

_FILE = "secret_key"


def server_secret(settings: Settings) -> bytes:
    """The 32+ byte server secret; created on first use when not configured."""
    if settings.secret_key:
        return settings.secret_key.encode("utf-8")
    path = Path(settings.data_dir) / _FILE
    try:
        return bytes.fromhex(path.read_text("ascii").strip())
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = secrets.token_hex(32)
    try:  # O_EXCL: of two processes starting together, one writes and both read its key
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return bytes.fromhex(path.read_text("ascii").strip())
    with os.fdopen(fd, "w") as fh:
        fh.write(fresh + "\n")
    return bytes.fromhex(fresh)


def derive(secret: bytes, purpose: str, length: int = 32) -> str:
    """A stable hex string for `purpose` derived from the server secret (HMAC-SHA256).

    >>> derive(b"k" * 32, "embed-token") == derive(b"k" * 32, "embed-token")
    True
    >>> len(derive(b"k" * 32, "x", 16))
    16
    """
    return hmac.new(secret, purpose.encode("utf-8"), hashlib.sha256).hexdigest()[:length]
