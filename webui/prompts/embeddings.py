"""Textual-inversion embeddings from the embeddings folder, the way A1111's EmbeddingDatabase finds them.

- Scanned recursively. `.pt`/`.bin` are read with torch's weights-only unpickler (a pickle that would run code is
  refused before anything in it executes), `.safetensors` with safetensors.
- Formats: A1111 `{"string_to_param": {"*": [n, D]}, "step", "sd_checkpoint", "sd_checkpoint_name"}`, kohya/A1111
  `{"emb_params": [n, D]}`, SDXL `{"clip_l": [n, 768], "clip_g": [n, 1280]}`, and diffusers' `learned_embeds.*`
  `{token: [D] or [n, D]}`.
- The file name without its extension is the trigger word (A1111). One exception: a diffusers file still called
  `learned_embeds.*` is triggered by the token stored in it (e.g. `<cat-toy>`), as diffusers users type it.
- `load_for(model)`: the vectors that fit the model's text encoder(s); the others are "skipped", with a reason.
- `TI hashes` in the infotext: the first 12 hex digits of the file's SHA-256 (A1111's Embedding.shorthash).
"""

from __future__ import annotations

import logging
import os
import pickle
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import torch

from webui.models.hashing import HashCache, sha256_file

log = logging.getLogger("easel.embeddings")

EMBEDDING_EXTENSIONS = (".pt", ".bin", ".safetensors")
FAMILY_BY_WIDTH = {768: "SD 1.x", 1024: "SD 2.x", 2048: "SDXL"}
Vectors: TypeAlias = "torch.Tensor | dict[str, torch.Tensor]"  # [n, D], or {"clip_l": [n, Dl], "clip_g": [n, Dg]}


class NotAnEmbedding(ValueError):
    """The file can't be used: the message says why (shown as the skip reason)."""


@dataclass
class Embedding:
    name: str
    path: Path
    vec: Vectors
    step: int | None = None
    sd_checkpoint: str | None = None
    sd_checkpoint_name: str | None = None

    @property
    def vectors(self) -> int:  # A1111's `vectors`: how many token positions the word takes
        return (self.vec["clip_l"] if isinstance(self.vec, dict) else self.vec).shape[0]

    @property
    def shape(self) -> int:
        """A1111's `shape`: the width of one vector (both encoders' widths added for SDXL)."""
        if isinstance(self.vec, dict):
            return self.vec["clip_l"].shape[-1] + self.vec["clip_g"].shape[-1]
        return self.vec.shape[-1]

    def api(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "sd_checkpoint": self.sd_checkpoint,
            "sd_checkpoint_name": self.sd_checkpoint_name,
            "shape": self.shape,
            "vectors": self.vectors,
        }


def _matrix(t: Any, what: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.dim() not in (1, 2) or t.numel() == 0:
        raise NotAnEmbedding(f"{what} is not a 1-D or 2-D float tensor")
    t = t.detach().to(torch.float32)
    return t.unsqueeze(0) if t.dim() == 1 else t


def _optional_str(value: Any) -> str | None:
    return None if value is None or isinstance(value, torch.Tensor) else str(value)


def parse_embedding(data: Any, name: str, path: Path) -> Embedding:
    """A loaded file → Embedding (A1111's create_embedding_from_data), or NotAnEmbedding saying why not."""
    if not isinstance(data, dict):
        raise NotAnEmbedding(f"holds a {type(data).__name__}, not a dict")
    if "string_to_param" in data:
        params = data["string_to_param"]
        params = getattr(params, "_parameters", params)  # files saved from a ParameterDict (torch ≤ 1.11)
        if not isinstance(params, dict) or len(params) != 1:
            raise NotAnEmbedding("string_to_param must hold exactly one term")
        vec: Vectors = _matrix(next(iter(params.values())), "string_to_param")
    elif "clip_l" in data and "clip_g" in data:
        vec = {k: _matrix(data[k], k) for k in ("clip_l", "clip_g")}
        if vec["clip_l"].shape[0] != vec["clip_g"].shape[0]:
            raise NotAnEmbedding("clip_l and clip_g have different vector counts")
    elif "emb_params" in data:
        vec = _matrix(data["emb_params"], "emb_params")
    else:
        tensors = {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}
        if len(tensors) != 1:
            raise NotAnEmbedding("expected string_to_param, emb_params, clip_l/clip_g, or one {token: tensor}")
        token, t = next(iter(tensors.items()))
        vec = _matrix(t, repr(token))
        if path.stem == "learned_embeds":
            name = str(token)
    step = data.get("step")
    return Embedding(
        name,
        path,
        vec,
        step=int(step) if isinstance(step, (int, float)) else None,
        sd_checkpoint=_optional_str(data.get("sd_checkpoint")),
        sd_checkpoint_name=_optional_str(data.get("sd_checkpoint_name")),
    )


def read_embedding_file(path: Path) -> Embedding:
    """Read one file. Raises NotAnEmbedding with the reason (refused pickle, unreadable, not an embedding)."""
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            data = load_file(str(path), device="cpu")
        except Exception as e:
            raise NotAnEmbedding(f"not a readable safetensors file ({e})") from e
    else:
        try:
            with torch.serialization.safe_globals([torch.nn.ParameterDict]):
                data = torch.load(str(path), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            raise NotAnEmbedding(
                "refused: the pickle holds objects other than tensors, and loading it could run "
                "code (convert it to .safetensors from a trusted source)"
            ) from e
        except Exception as e:
            raise NotAnEmbedding(f"cannot read it ({type(e).__name__}: {e})") from e
    return parse_embedding(data, path.stem, path)


def encoder_widths(pipe) -> tuple[int, ...]:
    """(CLIP-L width,) for SD1/SD2, (text_encoder, text_encoder_2) widths for SDXL; () when unknown."""
    encoders = [getattr(pipe, a, None) for a in ("text_encoder", "text_encoder_2")]
    return tuple(te.get_input_embeddings().embedding_dim for te in encoders if te is not None)


def _fit(e: Embedding, pipe) -> tuple[Vectors | None, str | None]:
    """(the vectors to give the Conditioner, None) when `e` fits the pipeline's text encoder(s), else (None, reason)."""
    has_l, has_g = getattr(pipe, "text_encoder", None) is not None, getattr(pipe, "text_encoder_2", None) is not None
    widths = encoder_widths(pipe)
    if not widths:  # no text encoder to compare with
        return e.vec, None
    if isinstance(e.vec, dict):
        want = {"clip_l": widths[0] if has_l else None, "clip_g": widths[-1] if has_g else None}
        if has_g and all(want[k] is None or e.vec[k].shape[-1] == want[k] for k in want):
            return (dict(e.vec) if has_l else e.vec["clip_g"]), None
    elif not has_g and e.shape == widths[0]:
        return e.vec, None
    expected = sum(widths) if has_l else widths[-1]
    made_for = FAMILY_BY_WIDTH.get(e.shape)
    return None, (
        f"vector width {e.shape}{f' ({made_for})' if made_for else ''} does not match this model's text "
        f"encoder width {expected}: made for another model family"
    )


def _pipeline(model):
    return getattr(model, "pipeline", model)


class EmbeddingCatalog:
    """Every embedding file under `embeddings_dir`. Rescans by itself when a file is added, changed or removed
    (checked on each use by stat only; unchanged files are not read again). Thread-safe."""

    def __init__(self, embeddings_dir: Path, hashes: HashCache | None = None, *, active_model=None):
        self.dir = Path(embeddings_dir)
        self.hashes = hashes
        self.active_model = active_model  # optional () -> LoadedModel | None, for the `loaded`/`skipped` views
        self._lock = threading.RLock()
        self._stamp: tuple | None = None
        self._files: dict[Path, tuple[tuple[int, int], Embedding | str]] = {}  # path → (mtime/size, emb or error)
        self._by_name: dict[str, Embedding] = {}
        self.errors: dict[str, str] = {}  # name → why the file could not be used at all
        self._fitted: dict[tuple, tuple[dict[str, Vectors], dict[str, str]]] = {}

    # --- scanning ------------------------------------------------------------------------------------------------
    def _scan(self) -> list[tuple[Path, tuple[int, int]]]:
        found: list[tuple[Path, tuple[int, int]]] = []
        if not self.dir.is_dir():
            return found
        for dirpath, dirnames, filenames in os.walk(self.dir, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for f in sorted(filenames):
                p = Path(dirpath) / f
                if f.startswith(".") or p.suffix.lower() not in EMBEDDING_EXTENSIONS:
                    continue
                try:
                    st = p.stat()
                except OSError:
                    continue
                if st.st_size > 0:
                    found.append((p, (st.st_mtime_ns, st.st_size)))
        return found

    def refresh(self, *, force: bool = True) -> None:
        """Rescan the folder (POST /sdapi/v1/refresh-embeddings). `force` re-reads every file."""
        with self._lock:
            files = self._scan()
            stamp = tuple(files)
            if not force and stamp == self._stamp:
                return
            old = {} if force else self._files
            self._files = {}
            for path, sig in files:
                cached = old.get(path)
                if cached is not None and cached[0] == sig:
                    self._files[path] = cached
                    continue
                try:
                    self._files[path] = (sig, read_embedding_file(path))
                except NotAnEmbedding as e:
                    log.warning("embedding %s skipped: %s", path.name, e)
                    self._files[path] = (sig, str(e))
            self._by_name, self.errors = {}, {}
            for path, (_, item) in self._files.items():
                name = item.name if isinstance(item, Embedding) else path.stem
                if name in self._by_name or name in self.errors:
                    log.warning("embedding %s: the name %r is already taken by another file; ignored", path, name)
                elif isinstance(item, Embedding):
                    self._by_name[name] = item
                else:
                    self.errors[name] = item
            self._stamp = stamp
            self._fitted.clear()

    def _current(self) -> dict[str, Embedding]:
        self.refresh(force=False)
        return self._by_name

    def all(self) -> dict[str, Embedding]:
        """name → Embedding for every readable file, whatever model it is for."""
        with self._lock:
            return dict(self._current())

    # --- per model -----------------------------------------------------------------------------------------------
    def load_for(self, model) -> tuple[dict[str, Vectors], dict[str, str]]:
        """(word → vectors for webui.prompts.conditioning.Conditioner, skipped: name → reason) for a LoadedModel or
        a pipeline. Files that could not be read at all are in `skipped` too."""
        pipe = _pipeline(model)
        with self._lock:
            embeddings = self._current()
            key = (
                getattr(pipe, "text_encoder", None) is not None,
                getattr(pipe, "text_encoder_2", None) is not None,
                encoder_widths(pipe),
            )  # all that _fit depends on
            if key not in self._fitted:
                loaded, skipped = {}, dict(self.errors)
                for name, e in embeddings.items():
                    vec, reason = _fit(e, pipe)
                    if reason is None:
                        loaded[name] = vec
                    else:
                        skipped[name] = reason
                self._fitted[key] = (loaded, skipped)
            loaded, skipped = self._fitted[key]
            return dict(loaded), dict(skipped)

    def vector_counts(self, model) -> dict[str, int]:
        """word → vector count for the token counter (chunks.token_count's `embeddings`)."""
        loaded, _ = self.load_for(model) if model is not None else ({}, {})
        return {w: (v["clip_l"] if isinstance(v, dict) else v).shape[0] for w, v in loaded.items()}

    def api(self, model=None) -> dict[str, dict[str, dict[str, Any]]]:
        """GET /sdapi/v1/embeddings: {loaded: {name: {step, sd_checkpoint, sd_checkpoint_name, shape, vectors}},
        skipped: {name: {…, reason}}}. With no model loaded every readable embedding counts as loaded (A1111)."""
        with self._lock:
            embeddings = self._current()
            if model is None:
                loaded, skipped = dict.fromkeys(embeddings), dict(self.errors)
            else:
                loaded, skipped = self.load_for(model)
            out_loaded = {n: embeddings[n].api() for n in loaded}
            out_skipped = {}
            for name, reason in skipped.items():
                e = embeddings.get(name)
                item = (
                    e.api()
                    if e is not None
                    else {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None, "shape": 0, "vectors": 0}
                )
                out_skipped[name] = {**item, "reason": reason}
            return {"loaded": out_loaded, "skipped": out_skipped}

    @property
    def loaded(self) -> dict[str, dict[str, Any]]:
        """api()["loaded"] for the active model (needs `active_model`); A1111's embedding_db.word_embeddings."""
        return self.api(self.active_model() if self.active_model else None)["loaded"]

    @property
    def skipped(self) -> dict[str, dict[str, Any]]:
        return self.api(self.active_model() if self.active_model else None)["skipped"]

    # --- hashes --------------------------------------------------------------------------------------------------
    def shorthash(self, name: str) -> str | None:
        """First 12 hex digits of the file's SHA-256 (cached in cache.json as "textual_inversion/<name>")."""
        e = self.all().get(name)
        if e is None:
            return None
        if self.hashes is None:
            return sha256_file(e.path)[:12]
        return self.hashes.get("hashes", f"textual_inversion/{name}", e.path, sha256_file)[:12]

    def ti_hashes(self, used_names) -> str:
        """The infotext's `TI hashes` value: "name: hash, name2: hash2" ("" when none was used); build_infotext
        quotes it, giving A1111's `TI hashes: "name: 0123456789ab"`."""
        parts = []
        for name in sorted(set(used_names or ())):
            h = self.shorthash(name)
            if h:
                parts.append(f"{name.replace(':', '').replace(',', '')}: {h}")
        return ", ".join(parts)
