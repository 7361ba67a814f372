"""Tensor sources a merge reads from: a .safetensors file read tensor by tensor (and row block by row block) through
the library's `safe_open`, or a state dict already in memory (a `.ckpt`/`.pt`, which torch can only unpickle whole:
through the loader's weights-only reader, never a plain pickle load)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch

from webui.errors import ModelLoadError

_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
           "BOOL": torch.bool}
for _name, _tag in (("float8_e4m3fn", "F8_E4M3"), ("float8_e5m2", "F8_E5M2")):
    if hasattr(torch, _name):
        _DTYPES[_tag] = getattr(torch, _name)


class TensorSource:
    """Names, shapes and dtypes up front; tensors (or row blocks) on demand."""

    name: str
    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, torch.dtype]
    metadata: dict[str, str]

    def rows(self, key: str, start: int, stop: int) -> torch.Tensor:
        """Rows start:stop along the first dimension (the whole tensor for a 0-d one)."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __contains__(self, key: str) -> bool:
        return key in self.shapes


class SafetensorsSource(TensorSource):
    def __init__(self, path: Path):
        from safetensors import safe_open

        self.name, self.path = path.name, path
        try:
            self._ctx = safe_open(str(path), framework="pt", device="cpu")
            self._f = self._ctx.__enter__()
            self.metadata = dict(self._f.metadata() or {})
            self.shapes, self.dtypes = {}, {}
            for key in self._f.keys():
                sl = self._f.get_slice(key)
                tag = sl.get_dtype()
                if tag not in _DTYPES:
                    raise ModelLoadError(f"{path.name}: tensor {key} has dtype {tag}, which a merge can't read")
                self.shapes[key], self.dtypes[key] = tuple(sl.get_shape()), _DTYPES[tag]
        except ModelLoadError:
            self.close()
            raise
        except Exception as e:  # the library raises several types for a damaged file
            self.close()
            raise ModelLoadError(f"{path.name}: not a readable safetensors file ({e})") from e

    def rows(self, key: str, start: int, stop: int) -> torch.Tensor:
        if not self.shapes[key]:
            return self._f.get_tensor(key)
        if start == 0 and stop >= self.shapes[key][0]:
            return self._f.get_tensor(key)
        return self._f.get_slice(key)[start:stop]

    def close(self) -> None:
        ctx, self._ctx = getattr(self, "_ctx", None), None
        if ctx is not None:
            with contextlib.suppress(Exception):
                ctx.__exit__(None, None, None)


class DictSource(TensorSource):
    def __init__(self, name: str, state: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None):
        self.name, self._state = name, dict(state)
        self.shapes = {k: tuple(v.shape) for k, v in self._state.items()}
        self.dtypes = {k: v.dtype for k, v in self._state.items()}
        self.metadata = dict(metadata or {})

    def rows(self, key: str, start: int, stop: int) -> torch.Tensor:
        t = self._state[key]
        return t if t.dim() == 0 else t[start:stop]

    def close(self) -> None:
        self._state.clear()


def open_checkpoint(path: Path) -> TensorSource:
    """A checkpoint as a source: safetensors streamed; anything else through the loader's weights-only reader."""
    if path.suffix.lower() == ".safetensors":
        return SafetensorsSource(path)
    from webui.models.loader import read_state_dict

    return DictSource(path.name, read_state_dict(path))


# keys A1111's load_vae_dict leaves out of a VAE file
_VAE_IGNORED = ("model_ema.decay", "model_ema.num_updates")


class VaeSource(TensorSource):
    """A VAE file (models/VAE) seen under the checkpoint's names: `first_stage_model.<key>`. A file whose keys
    already carry the prefix (a VAE cut out of a checkpoint) is read as it is."""

    PREFIX = "first_stage_model."

    def __init__(self, path: Path):
        self.name = path.name
        self._inner = open_checkpoint(path)
        self.metadata = {}
        self._names: dict[str, str] = {}  # checkpoint name → name in the file
        for key in self._inner.shapes:
            if key.startswith("loss") or key in _VAE_IGNORED:
                continue
            self._names[key if key.startswith(self.PREFIX) else self.PREFIX + key] = key
        self.shapes = {k: self._inner.shapes[v] for k, v in self._names.items()}
        self.dtypes = {k: self._inner.dtypes[v] for k, v in self._names.items()}

    def rows(self, key: str, start: int, stop: int) -> torch.Tensor:
        return self._inner.rows(self._names[key], start, stop)

    def close(self) -> None:
        self._inner.close()


@contextlib.contextmanager
def opened(*paths: Path | None) -> Iterator[list[TensorSource | None]]:
    """Open several checkpoints (None stays None) and close them all on exit."""
    sources: list[TensorSource | None] = []
    try:
        for p in paths:
            sources.append(open_checkpoint(p) if p is not None else None)
        yield sources
    finally:
        for s in sources:
            if s is not None:
                s.close()


def parsed_metadata(metadata: Mapping[str, str]) -> dict[str, Any]:
    """A checkpoint's metadata as A1111 reads it: values that are JSON objects are parsed (others stay strings)."""
    out: dict[str, Any] = {}
    for k, v in metadata.items():
        out[k] = v
        if isinstance(v, str) and v[:1] == "{":
            with contextlib.suppress(ValueError):
                out[k] = json.loads(v)
    return out
