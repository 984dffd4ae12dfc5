"""Small file helpers: atomic writes, so a crash never leaves a half-written file."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_writer(path: Path) -> Iterator[IO[bytes]]:
    """A binary file handle whose contents replace `path` only when the block completes.

    Written to a temp file beside `path`, flushed to disk, given the usual permissions
    (mkstemp makes 0600) and renamed over `path`; on any error the temp file is removed
    and `path` is untouched.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise _located(e, path, "create") from None
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError) and (e.filename is None or str(e.filename) == tmp):
            raise _located(e, path, "write") from None  # ENOSPC, EDQUOT, EIO on write/fsync: name the output
        raise


def _located(e: OSError, path: Path, verb: str):
    """An OS error while writing `path`, as a UserError naming `path` (not the hidden temp file)."""
    from ftwizard.errors import from_os_error

    err = from_os_error(e, action=f"{verb} {path.name}")
    err.where = str(path)
    return err


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_writer(path) as f:
        f.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
