"""The LoRA catalog: every LoRA file under models/Lora (and models/LyCORIS), as A1111 lists them.

Scanning reads only safetensors headers (the metadata and key names), never the tensors; `.pt`/`.ckpt` files are
opened with torch's weights-only unpickler. A file that cannot be used is still listed, with its error, so the user
sees why it does not work. Each entry's format is recognised from its key names.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from webui.errors import EaselError
from webui.models.hashing import HashCache, addnet_hash, sha256_file

LORA_EXTENSIONS = (".safetensors", ".pt", ".ckpt")
PREVIEW_SUFFIXES = (".preview.png", ".png", ".preview.jpg", ".jpg", ".preview.webp", ".webp")
SGM_BLOCKS = ("input_blocks", "middle_block", "output_blocks")


@dataclass
class LoraEntry:
    name: str  # file name without extension: what `<lora:name:w>` refers to
    alias: str  # ss_output_name from the metadata, else the name
    path: Path
    rel: str  # path relative to its root folder, without extension ("sub/x")
    metadata: dict[str, Any] = field(default_factory=dict)
    format: str = "unknown"  # kohya, kohya-sgm, locon, peft, diffusers, xlabs, loha, lokr, unknown
    family: str | None = None  # the base it was trained on, from its keys: "flux", "sd3", "sd" (a UNet), None
    error: str | None = None
    preview: Path | None = None
    mtime_ns: int = 0
    size: int = 0

    @property
    def is_safetensors(self) -> bool:
        return self.path.suffix.lower() == ".safetensors"

    @property
    def needs_unet_config(self) -> bool:
        return self.format == "kohya-sgm"

    def to_api(self) -> dict[str, Any]:
        """A1111's `GET /sdapi/v1/loras` item, plus Easel's `error` and `preview`."""
        return {
            "name": self.name,
            "alias": self.alias,
            "path": str(self.path),
            "metadata": self.metadata,
            "error": self.error,
            "preview": str(self.preview) if self.preview else None,
            "family": self.family,
        }


def parse_metadata(raw: dict[str, str]) -> dict[str, Any]:
    """A1111 turns metadata values that look like JSON objects (ss_tag_frequency, ...) into objects."""
    out: dict[str, Any] = {}
    for k, v in raw.items():
        if isinstance(v, str) and v[:1] == "{":
            try:
                v = json.loads(v)
            except ValueError:
                pass
        out[k] = v
    return out


def detect_format(keys: Iterable[str]) -> tuple[str, str | None]:
    """(format, error) from the key names alone. The error is set for formats diffusers cannot load."""
    keys = list(keys)
    joined = "\n".join(keys)
    if "hada_w1" in joined:
        return "loha", "LyCORIS LoHa: diffusers cannot load this format for Stable Diffusion; convert it to LoRA"
    if "lokr_w1" in joined:
        return "lokr", "LyCORIS LoKr: diffusers cannot load this format for Stable Diffusion; convert it to LoRA"
    if ".lora_down." in joined or ".lora_up." in joined:
        if not all(k.startswith(("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")) for k in keys):
            return "unknown", "kohya-style keys with an unknown prefix (expected lora_unet_ / lora_te_)"
        if any(b in joined for b in SGM_BLOCKS):
            return "kohya-sgm", None
        unet = [k for k in keys if k.startswith("lora_unet_")]
        if any(("_resnets_" in k or "_conv" in k) and "_attentions_" not in k for k in unet):
            return "locon", None
        return "kohya", None
    if ".lora_A." in joined or ".lora_B." in joined:
        return "peft", None
    if ".processor.proj_lora" in joined or ".processor.qkv_lora" in joined:
        return "xlabs", None  # XLabs' FLUX LoRAs (diffusers' Flux loader converts them)
    if ".lora.down." in joined or "lora_linear_layer" in joined or "_lora.down." in joined:
        return "diffusers", None
    sample = ", ".join(keys[:3]) or "no tensors"
    return "unknown", f"no LoRA weights recognised (keys: {sample})"


FAMILY_NAMES = {"flux": "FLUX.1", "sd3": "SD 3/3.5", "sd": "SD 1.x/2.x/SDXL"}


def detect_family(keys: Iterable[str]) -> str | None:
    """Which base a LoRA was made for, from its key names (the `names` FAMILY_NAMES gives): FLUX.1 (BFL's
    double/single blocks, diffusers' single_transformer_blocks), SD 3/3.5 (MMDiT joint_blocks; diffusers'
    transformer.transformer_blocks without any FLUX single block: a FLUX LoRA that trains only the double blocks
    reads as SD 3 here), SD's UNet (down/up/input/output blocks); None when the keys don't tell."""
    joined = "\n".join(keys)
    if any(m in joined for m in ("double_blocks", "single_blocks", "single_transformer_blocks")):
        return "flux"
    if "joint_blocks" in joined or "transformer.transformer_blocks." in joined:
        return "sd3"
    if any(
        m in joined for m in ("down_blocks", "up_blocks", "mid_block", "input_blocks", "output_blocks", "middle_block")
    ):
        return "sd"
    return None


def _read_keys(path: Path) -> tuple[list[str], dict[str, str]]:
    from webui.models.loader import read_header, read_state_dict

    if path.suffix.lower() == ".safetensors":
        shapes, meta = read_header(path)
        return list(shapes), meta
    return list(read_state_dict(path)), {}


def _preview(path: Path) -> Path | None:
    stem = path.with_suffix("")
    for suffix in PREVIEW_SUFFIXES:
        p = Path(str(stem) + suffix)
        if p.is_file():
            return p
    return None


def scan_files(roots: Iterable[Path]) -> list[tuple[Path, str]]:
    """(path, relative name without extension) of every LoRA file, recursively, in name order per root."""
    found: list[tuple[Path, str]] = []
    seen: set[Path] = set()
    for root in roots:
        if not root or not root.is_dir():
            continue
        part: list[tuple[Path, str]] = []
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for f in filenames:
                p = Path(dirpath) / f
                if f.startswith(".") or p.suffix.lower() not in LORA_EXTENSIONS:
                    continue
                if p.resolve() in seen:
                    continue
                seen.add(p.resolve())
                part.append((p, p.relative_to(root).with_suffix("").as_posix()))
        found += sorted(part, key=lambda t: t[1].lower())
    return found


class LoraCatalog:
    def __init__(self, roots: Iterable[Path], hashes: HashCache | None = None):
        self.roots = [Path(r) for r in roots]
        self.hashes = hashes
        self._lock = threading.Lock()
        self._entries: list[LoraEntry] = []
        self._known: dict[Path, LoraEntry] = {}  # by path, reused while mtime and size are unchanged
        self.header_reads = 0

    def refresh(self) -> list[LoraEntry]:
        entries: list[LoraEntry] = []
        known: dict[Path, LoraEntry] = {}
        for path, rel in scan_files(self.roots):
            try:
                st = path.stat()
            except OSError:
                continue
            old = self._known.get(path)
            if old is not None and (old.mtime_ns, old.size) == (st.st_mtime_ns, st.st_size):
                entry = old
                entry.preview = _preview(path)
            else:
                entry = self._describe(path, rel, st)
            known[path] = entry
            entries.append(entry)
        with self._lock:
            self._entries, self._known = entries, known
        return list(entries)

    def _describe(self, path: Path, rel: str, st: os.stat_result) -> LoraEntry:
        name = path.stem
        entry = LoraEntry(
            name=name, alias=name, path=path, rel=rel, mtime_ns=st.st_mtime_ns, size=st.st_size, preview=_preview(path)
        )
        self.header_reads += 1
        try:
            keys, raw = _read_keys(path)
        except EaselError as e:
            entry.error = e.message
            return entry
        except Exception as e:  # a damaged file must not hide the others
            entry.error = f"cannot read {path.name}: {type(e).__name__}: {e}"
            return entry
        entry.metadata = parse_metadata(raw)
        alias = raw.get("ss_output_name")
        entry.alias = alias.strip() if isinstance(alias, str) and alias.strip() else name
        entry.format, entry.error = detect_format(keys)
        entry.family = detect_family(keys)
        return entry

    def list(self) -> list[LoraEntry]:
        with self._lock:
            return list(self._entries)

    def find(self, name: str) -> LoraEntry | None:
        """By name (the file stem), relative path without extension, or alias; the first match in scan order."""
        items = self.list()
        for match in (lambda e: e.name == name, lambda e: e.rel == name, lambda e: e.alias == name):
            for e in items:
                if match(e):
                    return e
        return None

    def mark_error(self, entry: LoraEntry, error: str) -> None:
        """Remember a failure found when loading (listed with the entry until the file changes)."""
        entry.error = error

    def shorthash(self, entry: LoraEntry) -> str:
        """The 12-hex hash A1111 writes in `Lora hashes:` (addnet hash for safetensors, else the file's SHA-256)."""
        if entry.is_safetensors:
            fn, section = addnet_hash, "hashes-addnet"
        else:
            fn, section = sha256_file, "hashes"
        if self.hashes is None:
            return fn(entry.path)[:12]
        return self.hashes.get(section, f"lora/{entry.rel}", entry.path, fn)[:12]
