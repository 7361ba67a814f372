"""Scan checkpoint folders and name each file the way A1111 does (titles, model names, short hashes)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from webui.errors import ModelNotFound
from webui.models.hashing import HashCache, folder_hash, sha256_file

CHECKPOINT_EXTENSIONS = (".safetensors", ".ckpt", ".gguf")  # .gguf: SD3/FLUX transformers
VAE_EXTENSIONS = (".safetensors", ".pt", ".ckpt")


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    name: str  # path relative to its root folder, with the extension: "sub/tiny-b.safetensors"
    sha256: str
    is_folder: bool = False
    is_demo: bool = False

    @property
    def shorthash(self) -> str:
        return self.sha256[:10]

    @property
    def title(self) -> str:
        return f"{self.name} [{self.shorthash}]"

    @property
    def model_name(self) -> str:
        """The name without its extension, with '/' replaced by '_' (A1111's `model_name`)."""
        stem = self.name if self.is_folder else self.name.rsplit(".", 1)[0]
        return stem.replace("/", "_").replace("\\", "_")

    @property
    def infotext_name(self) -> str:
        """The infotext's `Model:`: the file's base name without its extension."""
        return self.path.name if self.is_folder else self.path.stem


def _is_diffusers_folder(p: Path) -> bool:
    return (p / "model_index.json").is_file() and ((p / "unet").is_dir() or (p / "transformer").is_dir())


def scan_checkpoints(root: Path) -> list[tuple[Path, str, bool]]:
    """(path, relative name, is_folder) for every checkpoint under `root`, recursively, in name order.
    A diffusers folder counts as one checkpoint and is not searched further."""
    found: list[tuple[Path, str, bool]] = []
    if not root.is_dir():
        return found
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        here = Path(dirpath)
        if here != root and _is_diffusers_folder(here):
            found.append((here, here.relative_to(root).as_posix(), True))
            dirnames.clear()
            continue
        dirnames.sort()
        for f in filenames:
            if Path(f).suffix.lower() in CHECKPOINT_EXTENSIONS and not f.startswith("."):
                found.append((here / f, (here / f).relative_to(root).as_posix(), False))
    return sorted(found, key=lambda t: t[1].lower())


class CheckpointCatalog:
    """Every checkpoint in the checkpoint folder, plus the bundled demo model, which is always listed."""

    def __init__(self, ckpt_dir: Path, hashes: HashCache, demo_dir: Path | None = None):
        self.ckpt_dir, self.demo_dir, self.hashes = ckpt_dir, demo_dir, hashes
        self._lock = threading.Lock()
        self._items: list[CheckpointInfo] = []
        self.extra_files: list[Path] = []  # e.g. --ckpt given as a path outside the checkpoint folder

    def add_file(self, path: Path) -> None:
        """List one more checkpoint (A1111 accepts --ckpt anywhere); its name is its file name."""
        path = path.expanduser().resolve()
        if path not in self.extra_files:
            self.extra_files.append(path)

    def refresh(self) -> list[CheckpointInfo]:
        items: list[CheckpointInfo] = []
        roots = [(self.ckpt_dir, False)] + ([(self.demo_dir, True)] if self.demo_dir else [])
        seen: set[Path] = set()
        for root, is_demo in roots:
            for path, rel, is_folder in scan_checkpoints(root):
                if path.resolve() in seen:
                    continue
                seen.add(path.resolve())
                digest = self.hashes.get("hashes", f"checkpoint/{rel}", path, folder_hash if is_folder else sha256_file)
                items.append(CheckpointInfo(path=path, name=rel, sha256=digest, is_folder=is_folder, is_demo=is_demo))
        for path in self.extra_files:
            if path.resolve() not in seen and path.exists():
                seen.add(path.resolve())
                is_folder = path.is_dir()
                digest = self.hashes.get(
                    "hashes", f"checkpoint/{path}", path, folder_hash if is_folder else sha256_file
                )
                items.append(CheckpointInfo(path=path, name=path.name, sha256=digest, is_folder=is_folder))
        with self._lock:
            self._items = items
        return items

    def list(self) -> list[CheckpointInfo]:
        with self._lock:
            return list(self._items)

    def find(self, query: str) -> CheckpointInfo:
        """By title, name, name without extension, model_name, short hash or full hash, or a path (A1111 accepts
        all)."""
        q = query.strip()
        items = self.list()
        for match in (
            lambda i: i.title == q,
            lambda i: i.name == q,
            lambda i: i.model_name == q,
            lambda i: i.name.rsplit(".", 1)[0] == q,
            lambda i: i.path.name == q or i.path.stem == q,
            lambda i: q.lower() in (i.shorthash, i.sha256, i.sha256[:8]),
        ):
            hits = [i for i in items if match(i)]
            if hits:
                return hits[0]
        # a path names a listed file only (symlinks resolved); anything else, existing or not, gets the same answer,
        # so the error can't be used to probe the server's disk
        real = os.path.realpath(os.path.expanduser(q)) if q and "\x00" not in q else None
        for i in items:
            if real is not None and os.path.realpath(i.path) == real:
                return i
        raise ModelNotFound(
            f"checkpoint not found: {query!r} (checkpoints are listed from models/Stable-diffusion/ or --ckpt-dir)"
        )

    def default(self) -> CheckpointInfo | None:
        """The first user checkpoint, else the demo model."""
        items = self.list()
        user = [i for i in items if not i.is_demo]
        return (user or items)[0] if items else None


VAE_BESIDE_SUFFIXES = (".vae.safetensors", ".vae.pt", ".vae.ckpt")


def vae_beside(checkpoint: Path) -> Path | None:
    """The VAE file named like a checkpoint next to it (what sd_vae "Automatic" uses); the last suffix found wins."""
    found = None
    for suffix in VAE_BESIDE_SUFFIXES:
        p = checkpoint.with_name(checkpoint.stem + suffix)
        if p.exists():
            found = p
    return found


@dataclass(frozen=True)
class VaeInfo:
    path: Path
    name: str  # relative file name, used as the `sd_vae` option value

    @property
    def model_name(self) -> str:
        return self.path.name


def scan_vaes(vae_dir: Path) -> list[VaeInfo]:
    if not vae_dir.is_dir():
        return []
    return [
        VaeInfo(path=p, name=p.relative_to(vae_dir).as_posix())
        for p in sorted(vae_dir.rglob("*"))
        if p.is_file() and p.suffix.lower() in VAE_EXTENSIONS
    ]
