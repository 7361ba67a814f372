"""Atomic writes: every write of user data goes to a temp file in the same folder, then is renamed into place,
so a crash never leaves a half-written file under the final name."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path next to `path`; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a saved image or model should get the usual permissions
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def ensure_file(path: str | os.PathLike, data: bytes | None = None, *, source: str | os.PathLike | None = None) -> bool:
    """Make `path` hold exactly `data` (or the bytes of the file `source`), trusting nothing already there: a file
    that is missing, truncated or different is replaced atomically (a hard link to `source` when possible, else a
    copy). Returns True when something was (re)written. Used for caches, so a disk that filled up during an earlier
    write heals on the next use instead of keeping a broken file for good."""
    path = Path(path)
    if data is None:
        if source is None:
            raise TypeError("ensure_file needs data or source")
        data = Path(source).read_bytes()
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return False
    except OSError:  # missing or unreadable: write it
        pass
    with atomic_path(path) as tmp:
        if source is not None:
            tmp.unlink()
            try:
                os.link(source, tmp)  # same bytes, no extra disk space
                return True
            except OSError:
                pass
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return True
