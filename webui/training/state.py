"""A training run's resume state as one safetensors file: the tensors (adapter weights, optimizer moments, the noise
RNG as uint8) as tensors, and everything else (step, losses, settings, optimizer param_groups and scalar state, the
LR scheduler) as JSON in the file's metadata. Reading it never unpickles anything, so a state file someone put in
a run folder can't run code; at worst it is refused and the run starts over.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from webui.fsutil import atomic_path

FORMAT = "easel-train-state"
TENSOR, ITEMS = "__tensor__", "__items__"  # markers in the JSON tree: a tensor by key; a dict with non-str keys


class StateError(ValueError):
    """The file is not a readable Easel training state."""


def _pack(obj: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().to("cpu").clone().contiguous()  # no shared storage: safetensors refuses it
        return {TENSOR: path}
    if isinstance(obj, dict):
        if all(isinstance(k, str) and k not in (TENSOR, ITEMS) for k in obj):
            return {k: _pack(v, f"{path}.{k}", tensors) for k, v in obj.items()}
        if not all(isinstance(k, (str, int)) for k in obj):
            raise TypeError(f"{path}: dict keys must be str or int")
        return {ITEMS: [[k, _pack(v, f"{path}.{k}", tensors)] for k, v in obj.items()]}  # optimizer state: int keys
    if isinstance(obj, (list, tuple)):
        return [_pack(v, f"{path}.{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"{path}: {type(obj).__name__} can't be stored in a training state")


def _unpack(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {TENSOR}:
            if obj[TENSOR] not in tensors:
                raise StateError(f"missing tensor {obj[TENSOR]!r}")
            return tensors[obj[TENSOR]]
        if set(obj) == {ITEMS}:
            return {k: _unpack(v, tensors) for k, v in obj[ITEMS]}
        return {k: _unpack(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unpack(v, tensors) for v in obj]
    return obj


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Write `state` (nested dicts/lists of tensors, numbers, strings) atomically to `path`."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    tree = _pack(state, "s", tensors)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT, "state": json.dumps(tree)})


def load_state(path: Path) -> dict[str, Any]:
    """The state saved by `save_state`. Raises StateError for anything else (a pickle, a damaged file)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT:
                raise StateError("not an Easel training state")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        state = _unpack(json.loads(meta["state"]), tensors)
    except StateError:
        raise
    except Exception as e:  # safetensors raises several types for a damaged file; bad JSON; a wrong tree
        raise StateError(f"unreadable ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict):
        raise StateError("not an Easel training state")
    return state
