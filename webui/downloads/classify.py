"""What a downloaded file is, read without running anything in it, and its conversion to safetensors.

A `.safetensors` file is read from its header only. A pickle (`.ckpt`, `.pt`, `.pth`, `.bin`) is loaded only with
`torch.load(weights_only=True)`: torch's restricted unpickler, which refuses any object other than tensors and plain
containers before it is built, so a hostile `__reduce__` never runs (UnsafeCheckpoint).

The kind decides the folder: a checkpoint is whatever the model manager's probe (webui/models/probe.py) recognises,
with its family; a LoRA whatever the LoRA catalog's format detection recognises; then ControlNet, VAE, textual
inversion embeddings and ESRGAN-type upscalers by their tensor names.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from webui.downloads.names import PICKLE_EXTENSIONS
from webui.errors import EaselError, ModelLoadError, UnsafeCheckpoint

_WRAPPERS = ("state_dict", "params_ema", "params", "model", "module")


@dataclass
class Inspected:
    kind: str | None  # the folder it belongs in ("Stable-diffusion", "Lora", …), None: not recognised
    is_pickle: bool
    family: str | None = None  # checkpoints: "sd1", "sdxl", "flux", …
    label: str = ""  # "SDXL", "LoRA (kohya)", …
    note: str = ""  # why it is not usable as it is (a LoRA format diffusers can't load), or why unrecognised
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)  # a pickle's tensors, for the conversion


def load_pickle(path: Path) -> Any:
    """A pickle through torch's weights-only unpickler only. A file that needs anything else is UnsafeCheckpoint."""
    try:
        with torch.serialization.safe_globals([torch.nn.ParameterDict]):  # old embedding files (as A1111 reads them)
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UnsafeCheckpoint(
            "refused: the pickle holds objects other than tensors, and loading it could run code; "
            "nothing in it was executed and the file was deleted",
            detail=str(e).splitlines()[0] if str(e) else None,
        ) from e
    except Exception as e:
        raise ModelLoadError(f"not a readable PyTorch file ({type(e).__name__}: {e})") from e


def flat_tensors(obj: Any) -> dict[str, torch.Tensor]:
    """The tensors of a loaded pickle, unwrapped from `state_dict`/`params_ema`/… and flattened with '.'."""
    while isinstance(obj, dict):
        inner = next((obj[k] for k in _WRAPPERS if isinstance(obj.get(k), dict)), None)
        if inner is None or any(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        obj = inner
    out: dict[str, torch.Tensor] = {}

    def walk(prefix: str, value: Any, depth: int) -> None:
        if isinstance(value, torch.Tensor):
            out[prefix] = value
        elif isinstance(value, dict) and depth < 8:
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v, depth + 1)

    walk("", obj, 0)
    return out


def _embedding(obj: Any, path: Path) -> bool:
    from webui.prompts.embeddings import NotAnEmbedding, parse_embedding

    if not isinstance(obj, dict) or not (
        {"string_to_param", "emb_params"} & set(obj)
        or {"clip_l", "clip_g"} <= set(obj)
        or (len(obj) == 1 and isinstance(next(iter(obj.values())), torch.Tensor))
    ):
        return False
    try:
        parse_embedding(obj, path.stem, path)
        return True
    except (NotAnEmbedding, TypeError, ValueError, RuntimeError):
        return False


def _has(keys: Sequence[str], *needles: str) -> bool:
    return any(any(n in k for n in needles) for k in keys)


def classify_shapes(shapes: Mapping[str, Sequence[int]], metadata: Mapping[str, str], name: str) -> Inspected:
    """The kind of a file from its tensor names and shapes (is_pickle is set by the caller)."""
    from webui.lora.catalog import detect_format
    from webui.models.probe import probe

    keys = list(shapes)
    if not keys:
        return Inspected(None, False, note="the file holds no tensors")
    try:
        result = probe(shapes, metadata, name=name)
        return Inspected("Stable-diffusion", False, family=result.family.value, label=result.label)
    except (ModelLoadError, KeyError, ValueError, TypeError, IndexError):
        pass
    if _has(keys, "control_model.", "controlnet_cond_embedding.", "input_hint_block."):
        return Inspected("ControlNet", False, label="ControlNet")
    fmt, error = detect_format(keys)
    if fmt != "unknown":
        return Inspected("Lora", False, label=f"LoRA ({fmt})", note=error or "")
    bare = [k.removeprefix("first_stage_model.").removeprefix("vae.") for k in keys]
    if "encoder.conv_in.weight" in bare and "decoder.conv_in.weight" in bare:
        return Inspected("VAE", False, label="VAE")
    if {"emb_params"} == set(keys) or {"clip_l", "clip_g"} == set(keys):
        return Inspected("embeddings", False, label="textual inversion embedding")
    if "conv_first.weight" in keys or _has(keys, "model.1.sub.", ".RDB1.", ".rdb1."):
        return Inspected("ESRGAN", False, label="ESRGAN-type upscaler")
    sample = ", ".join(keys[:3])
    return Inspected(None, False, note=f"no known model layout (keys: {sample}{', …' if len(keys) > 3 else ''})")


def inspect_file(path: Path, suffix: str) -> Inspected:
    """Read `path` (named `…{suffix}` once installed) safely and say what it is. ModelLoadError for a file that
    can't be read as its extension says, UnsafeCheckpoint for a pickle that would run code."""
    from webui.models.loader import read_header

    if suffix.lower() not in PICKLE_EXTENSIONS:
        shapes, metadata = read_header(path)
        return classify_shapes(shapes, metadata, path.name)
    obj = load_pickle(path)
    if _embedding(obj, path):
        return Inspected("embeddings", True, label="textual inversion embedding")
    tensors = flat_tensors(obj)
    found = classify_shapes({k: tuple(v.shape) for k, v in tensors.items()}, {}, path.name)
    found.is_pickle, found.tensors = True, tensors
    return found


def convert_to_safetensors(tensors: Mapping[str, torch.Tensor], dest: Path) -> None:
    """Write a pickle's tensors as `.safetensors` at `dest` (a temp path the caller moves into place). Tensors that
    share memory (tied weights) are saved as copies, which the format requires; A1111's `format: pt` metadata."""
    from safetensors.torch import save_file

    seen: set[tuple[int, int]] = set()
    out: dict[str, torch.Tensor] = {}
    for k, t in tensors.items():
        t = t.detach().contiguous()
        ident = (t.untyped_storage().data_ptr(), t.storage_offset())
        if ident in seen or t.untyped_storage().nbytes() != t.numel() * t.element_size():
            t = t.clone()
        seen.add((t.untyped_storage().data_ptr(), t.storage_offset()))
        out[k] = t
    try:
        save_file(out, str(dest), metadata={"format": "pt"})
    except EaselError:
        raise
    except Exception as e:
        raise ModelLoadError(f"cannot convert to safetensors ({type(e).__name__}: {e})") from e
