"""Notice new, changed and removed files in the model folders without a 🔄 (#19 item 7, "or a new file appears").

`FolderWatch.token()` lists the folders (names, sizes and modification times: no file is opened, nothing hashed)
and answers a short token that changes whenever that listing changes; on a change it first runs `on_change` (the
rescan of the catalogs), so whoever sees a new token finds the new lists in place. Pages poll it and update their
dropdowns only when the token they hold differs.

Hand-written rather than an inotify library (watchdog): a poll of a few folders every few seconds is as cheap, needs
no background thread or OS watch limits, and works on network mounts where inotify sees nothing."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable, Iterable

log = logging.getLogger("easel.models")

MAX_ENTRIES = 50_000  # a listing stops here: a huge tree costs a bounded walk, and changes beyond it go unseen


def listing_digest(folders: Iterable[Path], max_entries: int = MAX_ENTRIES) -> str:
    """A digest of every file under `folders` (recursively, following links once): path, size, mtime."""
    h = hashlib.blake2b(digest_size=12)
    seen: set[tuple[int, int]] = set()
    count = 0
    for root in folders:
        h.update(f"\0root:{root}".encode())
        stack = [root]
        while stack and count < max_entries:
            folder = stack.pop()
            try:
                st = folder.stat()
                if (st.st_dev, st.st_ino) in seen:  # a link back up the tree: each folder is read once
                    continue
                seen.add((st.st_dev, st.st_ino))
                with os.scandir(folder) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError:  # missing or unreadable: counts as empty (it may appear later)
                continue
            for entry in entries[: max_entries - count]:
                count += 1
                try:
                    if entry.is_dir(follow_symlinks=True):
                        stack.append(Path(entry.path))
                        continue
                    est = entry.stat(follow_symlinks=True)
                except OSError:
                    continue
                h.update(f"\0{entry.path}\0{est.st_size}\0{est.st_mtime_ns}".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


class FolderWatch:
    """The model folders' listing as a token; `on_change()` runs (once, under a lock) before a new token is given."""

    def __init__(
        self,
        folders: Callable[[], list[Path]],
        on_change: Callable[[], None],
        *,
        min_interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.folders, self.on_change = folders, on_change
        self.min_interval, self.clock = min_interval, clock
        self._lock = threading.Lock()
        self._digest: str | None = None
        self._checked = -float("inf")

    def token(self) -> str:
        """The current token; the folders are listed again at most every `min_interval` seconds (many pages poll)."""
        with self._lock:
            now = self.clock()
            if self._digest is not None and now - self._checked < self.min_interval:
                return self._digest
            self._checked = now
            digest = listing_digest(self.folders())
            if digest != self._digest:
                if self._digest is not None:
                    try:
                        self.on_change()
                    except Exception:  # noqa: BLE001 - a failed rescan is retried at the next check, not fatal
                        log.exception("rescanning the model folders failed")
                        return self._digest
                self._digest = digest
            return self._digest
