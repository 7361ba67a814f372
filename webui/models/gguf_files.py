"""GGUF transformer files (city96-style `flux1-dev-Q4_0.gguf`, `sd3.5_large-Q8_0.gguf`): the tensors keep the
original BFL/Stability names, quantized row-wise in GGML blocks. The header is read with the `gguf` package (names and
shapes without the data, for the probe and the catalog); the tensors through diffusers' own `load_gguf_checkpoint`,
which keeps quantized ones as GGUFParameter so the model holds them quantized in RAM and dequantizes per layer call
(diffusers' GGUFQuantizationConfig, passed by family_flow.build_single_file)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import torch

from webui.errors import ModelLoadError

SUFFIX = ".gguf"


def _reader(path: Path):
    try:
        from gguf import GGUFReader
    except ImportError as e:  # requirements.txt pins it; a venv made before that has no gguf
        raise ModelLoadError(f"{path.name}: GGUF files need the `gguf` package (pip install gguf)") from e
    try:
        return GGUFReader(str(path))
    except Exception as e:  # the reader raises ValueError/struct errors/IndexError on a damaged file
        raise ModelLoadError(f"{path.name}: not a readable GGUF file ({type(e).__name__}: {e})") from e


def read_header(path: Path) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """Tensor names with their logical (torch-order) shapes, and the string metadata fields, without the data.
    GGUF stores dimensions innermost first, so the logical shape is the stored one reversed."""
    from gguf import GGUFValueType

    reader = _reader(path)
    shapes = {t.name: tuple(int(d) for d in reversed(t.shape.tolist())) for t in reader.tensors}
    meta: dict[str, str] = {}
    for name, field in reader.fields.items():
        if field.types == [GGUFValueType.STRING]:
            meta[name] = bytes(field.parts[field.data[0]]).decode("utf-8", "replace")
    return shapes, meta


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor; quantized ones as diffusers' GGUFParameter (raw blocks plus their quant type)."""
    from diffusers.models.model_loading_utils import load_gguf_checkpoint

    _reader(path)  # the same clear errors for a missing package or a damaged file
    try:
        return load_gguf_checkpoint(str(path))
    except ValueError as e:  # a quant type diffusers cannot dequantize
        raise ModelLoadError(f"{path.name}: {str(e).splitlines()[0]}") from e


def quantization(state: dict[str, Any]) -> str:
    """The file's quant types, most used first ("Q4_0", "Q8_0+F16", …); "" for a plain state dict."""
    kinds = Counter(getattr(v, "quant_type", None) for v in state.values())
    kinds.pop(None, None)
    return "+".join(getattr(k, "name", str(k)) for k, _ in kinds.most_common())


def quantization_config(state: dict[str, Any], dtype: torch.dtype):
    """diffusers' GGUFQuantizationConfig when the state holds quantized tensors, else None."""
    if not quantization(state):
        return None
    from diffusers import GGUFQuantizationConfig

    return GGUFQuantizationConfig(compute_dtype=dtype)
