"""Model files for workers that do not share the head's models folder (`--ray-worker-data-dir`), found by sha256.

Before a job runs on a worker, the head lists the files the job needs (`needed_files`: the checkpoint, a chosen or
"Automatic" VAE, the LoRAs its prompts name), each with its folder, its path in that folder and its sha256. The
worker answers which of them it lacks (`ModelFileReceiver.missing`: same path, same size, same sha256 — the sha256
cached by mtime in the worker's cache.json, so a file is hashed once); the head then streams each missing file to
it in chunks (webui/workers/pool.py), and the worker writes them to a temp file beside the target, hashing as it
goes, and renames it into place only when size and sha256 match (`commit`). A worker on a shared folder (the
default: the head's paths) finds every file present and receives nothing.

The head pushes rather than the worker pulling: the head may be a Ray Client driver on a machine that is not a Ray
node, so no actor could read its disk, while the driver can always call its workers. No Ray in this module.

Diffusers folders (a checkpoint that is a folder) and textual-inversion embeddings are not sent: give workers those
through a shared models folder.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable

from webui.errors import InvalidRequest
from webui.models.catalog import vae_beside
from webui.models.hashing import sha256_file

CHUNK_BYTES = 8 << 20  # per call from the head: bounded memory on both sides, few enough round trips
# A1111's names for the folders files are sent into, and Easel's training runs (<data-dir>/training: a run's dataset
# and resume state go to the worker, its saves come back; remote_training.py)
FOLDERS = ("Stable-diffusion", "VAE", "Lora", "LyCORIS", "training")


@dataclass(frozen=True)
class NeededFile:
    folder: str  # one of FOLDERS
    rel: str  # path inside that folder, "/"-separated ("sub/tiny-b.safetensors")
    sha256: str
    size: int
    source: str = ""  # the head's path (never used on the worker)

    @property
    def key(self) -> str:
        return f"{self.folder}/{self.rel}"


def folder_roots(paths: Any) -> dict[str, Path]:
    return {
        "Stable-diffusion": Path(paths.ckpt_dir),
        "VAE": Path(paths.vae_dir),
        "Lora": Path(paths.lora_dir),
        "LyCORIS": Path(paths.lycoris_dir),
        "training": Path(paths.data_dir) / "training",
    }


def _hash_key(folder: str, rel: str) -> str:
    # the keys the head's catalogs use in cache.json, so a worker on the same folder finds the head's hashes
    return f"checkpoint/{rel}" if folder == "Stable-diffusion" else f"{folder.lower()}/{rel}"


def safe_target(roots: dict[str, Path], folder: str, rel: str) -> Path:
    """Where a sent file goes: inside its folder, never above it (a relative path without '..', no drive, no NUL)."""
    root = roots.get(folder)
    parts = PurePosixPath(rel).parts if isinstance(rel, str) else ()
    if (
        root is None
        or not rel
        or "\x00" in rel
        or "\\" in rel
        or rel.startswith("/")
        or ".." in parts
        or any(p in ("", ".") for p in rel.split("/"))
    ):
        raise InvalidRequest(f"refused model file path {folder!r}/{rel!r}")
    target = (root / rel).resolve()
    if not target.is_relative_to(root.resolve()):
        raise InvalidRequest(f"refused model file path {folder!r}/{rel!r}")
    return target


# --- head side ---------------------------------------------------------------------------------------------------


def needed_files(application: Any, task: Any) -> list[NeededFile]:
    """The single files a job on a worker needs, from the head's catalogs (hashes cached in the head's cache.json)."""
    from webui.lora.tags import parse_prompt

    roots = folder_roots(application.paths)
    found: dict[str, NeededFile] = {}

    def add(folder: str, path: Path) -> None:
        try:
            rel = path.resolve().relative_to(roots[folder].resolve()).as_posix()
        except ValueError:
            return  # outside the folder (--ckpt given as a path): only a shared folder can give it to a worker
        digest = application.hashes.get("hashes", _hash_key(folder, rel), path, sha256_file)
        found.setdefault(f"{folder}/{rel}", NeededFile(folder, rel, digest, path.stat().st_size, str(path)))

    ckpt = None
    if task.checkpoint:
        try:
            ckpt = application.catalog.find(task.checkpoint)
        except Exception:
            ckpt = None  # the worker answers "not found" in its own words
    vae = str(task.options.get("sd_vae") or "Automatic")
    if ckpt is not None and not ckpt.is_folder and not ckpt.is_demo:
        add("Stable-diffusion", ckpt.path)
        beside = vae_beside(ckpt.path) if vae == "Automatic" else None
        if beside is not None:  # the one the worker's manager will pick, as the head's would
            add("Stable-diffusion", beside)
    if vae not in ("Automatic", "None", ""):
        try:
            add("VAE", application.models.find_vae(vae).path)
        except Exception:
            pass
    if task.kind == "train-lora":
        return list(found.values()) + training_files(task)
    request = task.request
    for text in (getattr(request, "prompt", ""), getattr(request, "hr_prompt", "")):
        for tag in parse_prompt(str(text or "")).loras:
            entry = application.lora_catalog.find(tag.name)
            if entry is not None:
                for folder in ("Lora", "LyCORIS"):
                    if entry.path.resolve().is_relative_to(roots[folder].resolve()):
                        add(folder, entry.path)
                        break
    return list(found.values())


def training_files(task: Any) -> list[NeededFile]:
    """A training run's dataset (images and captions, under a folder named for the job) and, when the head has one,
    its resume state: what a worker lost mid-run left on the head, so the next worker continues from there."""
    from webui.training.dataset import CAPTION_EXTENSIONS

    plan, out = task.request, []

    def add(path: Path, rel: str) -> None:
        data = path.read_bytes()  # small files (images, a LoRA-sized state): hashed here, not cached in cache.json
        out.append(NeededFile("training", rel, hashlib.sha256(data).hexdigest(), len(data), str(path)))

    folder = Path(plan.dataset.folder)
    sent = f"{plan.req.name}/dataset-{task.job_id[:12]}"
    for item in plan.dataset.items:
        add(item.path, f"{sent}/{item.path.relative_to(folder).as_posix()}")
        for candidate in [item.path.with_suffix(e) for e in CAPTION_EXTENSIONS] + [Path(str(item.path) + ".txt")]:
            if candidate.is_file():
                add(candidate, f"{sent}/{candidate.relative_to(folder).as_posix()}")
    if plan.state_file.is_file():
        add(plan.state_file, f"{plan.req.name}/{plan.state_file.name}")
    return out


def read_chunks(file: NeededFile, chunk: int = CHUNK_BYTES) -> Iterable[tuple[int, bytes]]:
    """(offset, bytes) of a head-side file, in order."""
    with open(file.source, "rb") as f:
        offset = 0
        while True:
            data = f.read(chunk)
            if not data:
                return
            yield offset, data
            offset += len(data)


# --- worker side -------------------------------------------------------------------------------------------------


@dataclass
class _Incoming:
    file: NeededFile
    target: Path
    temp: Path
    handle: Any
    digest: Any = field(default_factory=hashlib.sha256)
    written: int = 0


class ModelFileReceiver:
    """A worker's end: which files it lacks, and writing what the head sends (temp file, verified, then rename)."""

    def __init__(self, paths: Any, hashes: Any, on_change: Callable[[set[str]], None] | None = None):
        self.roots = folder_roots(paths)
        self.hashes = hashes
        self.on_change = on_change
        self._incoming: dict[str, _Incoming] = {}
        self.received: list[str] = []  # keys of files written here, in order (GET /easel/v1/workers shows the count)

    def missing(self, files: list[NeededFile]) -> list[NeededFile]:
        lacking = []
        for f in files:
            target = safe_target(self.roots, f.folder, f.rel)
            if not (
                target.is_file()
                and target.stat().st_size == f.size
                and self.hashes.get("hashes", _hash_key(f.folder, f.rel), target, sha256_file) == f.sha256
            ):
                lacking.append(f)
        return lacking

    def begin(self, file: NeededFile) -> None:
        self.abort(file.sha256)
        target = safe_target(self.roots, file.folder, file.rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        # unique per writer: workers on one machine share the data folder, and two that lack the same file receive
        # it at once (with one name, the first rename left the second without its temp file: FileNotFoundError)
        temp = target.with_name(f".{target.name}.{file.sha256[:12]}.{os.getpid()}.{secrets.token_hex(4)}.part")
        self._incoming[file.sha256] = _Incoming(file, target, temp, open(temp, "wb"))

    def write(self, sha256: str, offset: int, data: bytes) -> int:
        inc = self._incoming.get(sha256)
        if inc is None:
            raise InvalidRequest(f"no transfer under way for {sha256[:12]}")
        if offset != inc.written or inc.written + len(data) > inc.file.size:
            self.abort(sha256)
            raise InvalidRequest(
                f"{inc.file.key}: chunk at {offset} does not follow {inc.written} bytes of {inc.file.size}"
            )
        inc.handle.write(data)
        inc.digest.update(data)
        inc.written += len(data)
        return inc.written

    def commit(self, sha256: str) -> str:
        inc = self._incoming.pop(sha256, None)
        if inc is None:
            raise InvalidRequest(f"no transfer under way for {sha256[:12]}")
        try:
            inc.handle.flush()
            os.fsync(inc.handle.fileno())
            inc.handle.close()
            if inc.written != inc.file.size or inc.digest.hexdigest() != inc.file.sha256:
                raise InvalidRequest(
                    f"{inc.file.key}: received {inc.written} bytes with sha256 "
                    f"{inc.digest.hexdigest()[:12]}, expected {inc.file.size} bytes, "
                    f"{inc.file.sha256[:12]}: not kept"
                )
            os.replace(inc.temp, inc.target)
        except BaseException:
            inc.temp.unlink(missing_ok=True)
            raise
        self.received.append(inc.file.key)
        if self.on_change is not None:
            self.on_change({inc.file.folder})
        return str(inc.target)

    def abort(self, sha256: str) -> None:
        inc = self._incoming.pop(sha256, None)
        if inc is not None:
            inc.handle.close()
            inc.temp.unlink(missing_ok=True)
