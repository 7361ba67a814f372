"""A1111's model hashes, with a cache.json keyed by path and invalidated by mtime."""

from __future__ import annotations

import hashlib
import json
import struct
import threading
from pathlib import Path

from webui.fsutil import atomic_write_json

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def file_stamp(path: Path) -> tuple[int, int]:
    """(size, mtime_ns) of a file, or of a folder's files (their total size, the newest mtime): what identifies its
    content without hashing it (a file replaced under the same name changes it); (0, 0) when it can't be read."""
    try:
        if path.is_dir():
            stats = [p.stat() for p in path.rglob("*") if p.is_file()]
            return sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=0)
        st = path.stat()
        return st.st_size, st.st_mtime_ns
    except OSError:
        return 0, 0


def legacy_model_hash(path: Path) -> str:
    """A1111's old 8-character hash: SHA-256 of the 0x10000 bytes at offset 0x100000."""
    with open(path, "rb") as f:
        f.seek(0x100000)
        return hashlib.sha256(f.read(0x10000)).hexdigest()[:8]


def addnet_hash(path: Path) -> str:
    """The "addnet" hash of a safetensors file: SHA-256 of the tensor data after the 8-byte length and JSON header."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        f.seek(8 + n)
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def folder_hash(folder: Path) -> str:
    """A diffusers folder has no single file; hash its UNet weights (or, failing that, its configs)."""
    for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"):
        if (folder / "unet" / name).exists():
            return sha256_file(folder / "unet" / name)
    return hashlib.sha256((folder / "model_index.json").read_bytes()).hexdigest()


class HashCache:
    """`cache.json` in A1111's shape: {"hashes": {"checkpoint/<name>": {"mtime", "sha256"}}, "hashes-addnet": {…}}."""

    def __init__(self, file: Path):
        self.file = file
        self._lock = threading.Lock()
        try:
            self._data = json.loads(file.read_text()) if file.exists() else {}
        except (OSError, json.JSONDecodeError):
            self._data = {}  # a damaged cache is only a cache: rebuild it

    def get(self, section: str, key: str, path: Path, compute) -> str:
        mtime = path.stat().st_mtime
        with self._lock:
            entry = self._data.get(section, {}).get(key)
            if entry and entry.get("mtime") == mtime and entry.get("sha256"):
                return entry["sha256"]
        value = compute(path)
        with self._lock:
            self._data.setdefault(section, {})[key] = {"mtime": mtime, "sha256": value}
            atomic_write_json(self.file, self._data)
        return value
