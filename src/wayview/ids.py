"""wayview.ids: mint and parse entity ids (digit strings on the wire, spec §1.3)."""

from __future__ import annotations

import re
import secrets

#: Numeric ids are 15–16 digits, no leading zero, below 2^53 (JavaScript-safe; iD reads tile ids
#: as numbers).
ID_MIN = 10**14
ID_MAX = 2**53 - 1
_ID_RE = re.compile(r"[1-9][0-9]{0,15}")
_SEQUENCE_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
SEQUENCE_KEY_LENGTH = 22
_SEQUENCE_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def new_id() -> int:
    """A random node id in [10^14, 2^53).

    >>> ID_MIN <= new_id() <= ID_MAX
    True
    """
    return ID_MIN + secrets.randbelow(ID_MAX - ID_MIN + 1)


def parse_id(text: str) -> int | None:
    """The node id a path or parameter names, or None when it cannot be one.

    >>> parse_id("1933525276802129"), parse_id("0123"), parse_id("abc")
    (1933525276802129, None, None)
    """
    if not _ID_RE.fullmatch(text):
        return None
    value = int(text)
    return value if value <= ID_MAX else None


def new_sequence_key() -> str:
    """A sequence key: 22 lower-case alphanumerics, like the hosted `7nfcwfvjdtphz7yj6zat6a`.

    >>> len(new_sequence_key())
    22
    """
    return "".join(secrets.choice(_SEQUENCE_ALPHABET) for _ in range(SEQUENCE_KEY_LENGTH))


def is_sequence_key(text: str) -> bool:
    """Whether `text` can be a sequence key (URL-safe, bounded).

    >>> is_sequence_key("7nfcwfvjdtphz7yj6zat6a"), is_sequence_key("a/b")
    (True, False)
    """
    return bool(_SEQUENCE_RE.fullmatch(text))
