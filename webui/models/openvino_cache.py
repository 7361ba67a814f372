"""The OpenVINO backend's disk cache (data folder's `cache/openvino`): a size budget with least-recently-used eviction,
and the clean-up of interrupted conversions. No openvino import: plain files.

One entry per IR key (checkpoint + LoRA set + OpenVINO version, openvino_backend.ir_key):
- `<key>.xml` + `<key>.bin`: the IR (3.4 GB of f32 weights for SD 1.5), written under temporary names
  (`<key>.<pid>.tmp.xml/.bin`) and renamed;
- `compiled/<key>/<precision>/`: OpenVINO's compiled-blob cache (`CACHE_DIR`) for that IR, one blob per shape; kept
  per key so it goes with its IR (OpenVINO names its blobs by a hash that says nothing of which IR they came from).

The `.xml`'s mtime is the entry's last use: touched whenever a job uses the IR. `evict` (after a conversion and after
a compile that may have written a blob) removes whole entries, least recently used first, until the folder fits the
budget (setting `openvino_cache_mb`), never the entry in use: an entry alone larger than the budget stays while it is
used (the budget can't be met without converting again at every job), and goes once another one is used. Files the
cache doesn't know (blobs directly in `compiled/` from before the per-key folders, a key's compiled folder without
its IR) are removed first. An IR removed while another loaded checkpoint's UNet still holds it in memory keeps
running from memory in this process (OpenVINO maps the .bin: its disk space is freed when that model is dropped);
a later process converts it again.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MB = 1024 * 1024
TMP = ".tmp"  # infix of an interrupted conversion's files: <key>.<pid>.tmp.xml / .bin


@dataclass(frozen=True)
class Entry:
    key: str
    used: float  # the .xml's mtime: last use; 0 for files no IR owns (removed first)
    size: int
    paths: tuple[Path, ...]


def compiled_dir(folder: Path, key: str) -> Path:
    return folder / "compiled" / key


def _size(path: Path) -> int:
    try:
        if path.is_dir():
            return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        return path.stat().st_size
    except OSError:
        return 0


def entries(folder: Path) -> list[Entry]:
    """What the cache holds, least recently used first (unowned files first of all)."""
    found: list[Entry] = []
    keys: set[str] = set()
    for xml in folder.glob("*.xml"):
        if TMP in xml.name:
            continue
        key = xml.stem
        try:
            used = xml.stat().st_mtime
        except OSError:
            continue  # removed meanwhile
        keys.add(key)
        paths = (xml, xml.with_suffix(".bin"), compiled_dir(folder, key))
        found.append(Entry(key, used, sum(_size(p) for p in paths), paths))
    compiled = folder / "compiled"
    if compiled.is_dir():
        for path in compiled.iterdir():
            if path.name not in keys:  # a legacy blob, or the blobs of a key whose IR is gone (kept while in use)
                found.append(Entry(path.name if path.is_dir() else "", 0.0, _size(path), (path,)))
    return sorted(found, key=lambda e: e.used)


def touch(folder: Path, key: str) -> None:
    """Mark the entry as used now (its .xml's mtime)."""
    try:
        os.utime(folder / f"{key}.xml")
    except OSError:
        pass  # gone meanwhile (another process evicted it): the model in memory still runs


def _remove(path: Path) -> None:
    try:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    except OSError as e:  # e.g. a file still open on Windows: left for the next eviction
        log.warning("OpenVINO cache: could not remove %s (%s)", path, e)


def evict(folder: Path, budget_mb: int, keep: str) -> list[str]:
    """Remove least recently used entries until the folder fits `budget_mb`, never `keep` (the entry in use); returns
    the removed keys ("" for unowned files)."""
    listed = entries(folder)
    total = sum(e.size for e in listed)
    budget = int(budget_mb) * MB
    removed: list[str] = []
    for entry in listed:
        if total <= budget:
            break
        if entry.key == keep:
            continue
        for path in entry.paths:
            _remove(path)
        total -= entry.size
        removed.append(entry.key)
    if removed:
        log.info("OpenVINO cache: removed %s to fit %d MB", ", ".join(k or "unowned blobs" for k in removed), budget_mb)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process's own leftovers: a conversion of it that failed (it converts one at a time)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, another user's
    return True


def clean_interrupted(folder: Path) -> list[Path]:
    """Remove the temporary files of conversions that did not finish (the process died or failed before the rename);
    a conversion still running in another live process keeps its files. Run at the Application's start."""
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        parts = path.name.split(".")  # <key>.<pid>.tmp.<ext>
        if len(parts) < 3 or parts[2] != TMP[1:]:
            continue
        if parts[1].isdigit() and _alive(int(parts[1])):
            continue
        _remove(path)
        removed.append(path)
    return removed
