"""Upscaler model files (ESRGAN, Real-ESRGAN, SwinIR, HAT, DAT, …) run by spandrel, without torchvision.

spandrel detects an upscaler's architecture and hyperparameters from its state dict. Its package `__init__` builds
the main registry, which imports every architecture, and two of them (LaMa, RestoreFormer: inpainting and face
restoration, not upscalers) import torchvision, which Easel never installs (it pins its own torch). So spandrel is
installed `--no-deps` and, when torchvision is absent, its package is registered without running `__init__` (its
own modules import `spandrel.util` by absolute name, so the stand-in must carry the real name), and a registry of
the architectures that do import is built here, in spandrel's own detection order (read from its main_registry
source so the order is spandrel's, not a copy). With torchvision present the real package is used as is.

Files are read safely: safetensors, or `torch.load(weights_only=True)` for .pth/.pt (no pickle code runs).
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from PIL import Image

PACKAGE = "spandrel"
ARCH_LINE = re.compile(r"from_architecture\(\s*(\w+)\.(\w+)\(\)\s*\)")


@dataclass
class Spandrel:
    """spandrel's registry of importable architectures, and why the others can't be used."""

    registry: Any
    canonicalize: Any
    skipped: dict[str, str] = field(default_factory=dict)


def missing_reason() -> str | None:
    """Why upscaler models can't run here, or None."""
    return None if importlib.util.find_spec(PACKAGE) else "spandrel is not installed"


def _package() -> ModuleType:
    """The `spandrel` package without its `__init__` (see the module docstring), or the real one."""
    if PACKAGE in sys.modules:
        return sys.modules[PACKAGE]
    if importlib.util.find_spec("torchvision") is not None:
        return importlib.import_module(PACKAGE)
    found = importlib.util.find_spec(PACKAGE)  # locates the package folder; runs nothing
    if found is None or not found.submodule_search_locations:
        raise ImportError("spandrel is not installed")
    spec = importlib.machinery.ModuleSpec(PACKAGE, None, is_package=True)
    spec.submodule_search_locations = list(found.submodule_search_locations)
    module = importlib.util.module_from_spec(spec)
    module.__path__ = list(found.submodule_search_locations)
    sys.modules[PACKAGE] = module
    return module


def load_spandrel() -> Spandrel:
    """A registry of every spandrel architecture that imports on this machine (cheap after the first call: the
    modules stay in sys.modules)."""
    package = _package()
    registry_mod = importlib.import_module(f"{PACKAGE}.__helpers.registry")
    canonical = importlib.import_module(f"{PACKAGE}.__helpers.canonicalize").canonicalize_state_dict
    if hasattr(package, "MAIN_REGISTRY"):  # the real package imported: use its registry as is
        return Spandrel(package.MAIN_REGISTRY, canonical)
    source = Path(package.__path__[0], "__helpers", "main_registry.py").read_text(encoding="utf-8")
    registry, skipped = registry_mod.ArchRegistry(), {}
    for arch_module, arch_class in ARCH_LINE.findall(source):
        try:
            module = importlib.import_module(f"{PACKAGE}.architectures.{arch_module}")
            registry.add(registry_mod.ArchSupport.from_architecture(getattr(module, arch_class)()))
        except Exception as e:  # e.g. ModuleNotFoundError: torchvision; that architecture is left out, with why
            skipped[arch_module] = f"{type(e).__name__}: {e}"
    return Spandrel(registry, canonical, skipped)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    for key in ("params_ema", "params", "state_dict"):  # Real-ESRGAN / BasicSR wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return state


def load_model(path: Path):
    """spandrel's ImageModelDescriptor for the file; ValueError with the reason when it isn't an upscaler."""
    sp = load_spandrel()
    try:
        state = read_state_dict(path)
    except Exception as e:
        raise ValueError(
            f"can't read {path.name} as a state dict (safetensors, or a weights-only .pth): {type(e).__name__}"
        ) from None
    try:
        model = sp.registry.load(sp.canonicalize(state))
    except Exception as e:
        raise ValueError(f"{path.name} is not a model architecture spandrel knows ({type(e).__name__})") from None
    if getattr(model, "purpose", "SR") not in ("SR", "Restoration") or getattr(model, "input_channels", 3) != 3:
        raise ValueError(f"{path.name} is a {model.architecture.name} model for {model.purpose}, not an upscaler")
    return model.eval()


@torch.no_grad()
def run_model(model, image: Image.Image) -> Image.Image:
    """One RGB image through the model at its own scale (spandrel pads to its size requirements itself)."""
    x = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    y = model(x.to(model.device, model.dtype))[0].float().clamp(0, 1)
    return Image.fromarray((y.permute(1, 2, 0).cpu().numpy() * 255).round().astype("uint8"))
