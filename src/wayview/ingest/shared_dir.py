"""wayview.ingest.shared_dir: every process of a scale-out deployment sees one `data_dir`.

Uploads are staged in `data_dir/uploads` by the API process that receives them and read by
whichever worker takes the job (and resumed by whichever API host the next request of the
client reaches). With PostgreSQL and a remote blob store the processes may run on several
hosts, and they must then share `data_dir` (NFS, EFS, a shared volume): a worker that sees
another folder would find no upload and park the job (issue #22 item 6).

`check_shared_data_dir` makes that rule a start-up check that fails loudly. The first
process writes a random id both into `data_dir` and into the blob store, which every host of
the deployment reaches; a later process whose `data_dir` holds another id, or none, is not
sharing the folder and refuses to start. To adopt a new `data_dir` on purpose (no upload in
flight), delete the blob `deployment/data_dir_id`.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from wayview.blobs.base import BlobStore
from wayview.errors import BlobsUnavailable, InvalidInput
from wayview.settings import Settings
from wayview.store import uses_postgres

#: The blob holding the deployment's data_dir id, and the file holding it in data_dir.
MARKER_KEY = "deployment/data_dir_id"
MARKER_FILE = ".wayview-data-dir-id"


class DataDirNotShared(InvalidInput):
    """This process's data_dir is not the folder the deployment's other processes use."""


def _read_local(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def _write_local(path: Path, ident: str) -> None:
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    tmp.write_text(ident + "\n", encoding="ascii")
    os.replace(tmp, path)


def _read_shared(blobs: BlobStore) -> str | None:
    try:
        return blobs.get_bytes(MARKER_KEY).decode("ascii", "replace").strip()
    except FileNotFoundError:
        return None
    except Exception as exc:  # the blob store's own errors (obstore's, OSError)
        raise BlobsUnavailable(f"cannot read {MARKER_KEY} from the blob store: "
                               f"{type(exc).__name__}: {exc}") from None


def check_shared_data_dir(settings: Settings, blobs: BlobStore) -> None:
    """Raise DataDirNotShared unless `settings.data_dir` is the deployment's shared folder.

    Only a deployment that can span hosts is checked: PostgreSQL and a remote blob store (a
    local blob folder or SQLite live in data_dir itself). Called by `serve` and `worker`
    before they start.
    """
    if not uses_postgres(settings) or blobs.local_path(MARKER_KEY) is not None:
        return
    local = settings.data_dir / MARKER_FILE
    mine = _read_local(local)
    shared = _read_shared(blobs)
    if shared is None:  # the deployment's first process: this data_dir is the shared one
        ident = mine or secrets.token_hex(16)
        if mine is None:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            _write_local(local, ident)
        try:
            blobs.put_bytes(MARKER_KEY, ident.encode("ascii"))
        except Exception as exc:  # the blob store's own errors (obstore's, OSError)
            raise BlobsUnavailable(f"cannot write {MARKER_KEY} to the blob store: "
                                   f"{type(exc).__name__}: {exc}") from None
        shared = _read_shared(blobs)  # another host starting at once may have won
    if _read_local(local) != shared:
        raise DataDirNotShared(
            f"data_dir {settings.data_dir} is not the folder the other processes of this "
            "deployment use (its id differs from the blob store's "
            f"{MARKER_KEY}): uploads are staged there, so every serve and worker host must "
            "mount the same data_dir (NFS, EFS, a shared volume; docs/deployment.md). To "
            f"adopt this folder on purpose, with no upload in flight, delete the blob "
            f"{MARKER_KEY}.")
