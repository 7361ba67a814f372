"""CodeFormer, only when the user has installed `spandrel_extra_arches` themselves.

CodeFormer's architecture is under the S-Lab License 1.0 (non-commercial use only), which is why spandrel keeps it
out of its main package and ships it in `spandrel_extra_arches`. Easel does not install that package nor ship the
architecture: a user who may use it under that licence installs it (`pip install --no-deps
spandrel_extra_arches==0.2.0`: it declares torchvision, which must never be pulled in) and CodeFormer files in
models/Codeformer then load, with `code_former_weight` as its fidelity weight. Without it, a CodeFormer file is
refused with this reason.

Only the CodeFormer architecture module is imported (not the package's `__init__`, which imports spandrel's main
registry; when spandrel itself runs without its `__init__`, see upscaler_models.py, the names spandrel's
`__init__` would export and that the architecture imports are given to that stand-in package from spandrel's own
`model_descriptor` module). Nothing else of spandrel_extra_arches runs.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
from typing import Any

PACKAGE = "spandrel_extra_arches"
PIP = "pip install --no-deps spandrel_extra_arches==0.2.0"
LICENCE_NOTE = (
    "CodeFormer's architecture is under the non-commercial S-Lab License 1.0, so Easel doesn't install "
    f"it; if that licence allows your use, install it yourself ({PIP}) and restart"
)
# what spandrel's __init__ exports from __helpers.model_descriptor and the CodeFormer architecture imports
DESCRIPTOR_NAMES = ("Architecture", "ImageModelDescriptor", "SizeRequirements", "StateDict")


def installed() -> bool:
    return importlib.util.find_spec(PACKAGE) is not None


def _bare_package(name: str) -> None:
    """`name` in sys.modules as its folder only, its `__init__` not run (as upscaler_models does for spandrel)."""
    if name in sys.modules:
        return
    found = importlib.util.find_spec(name)
    if found is None or not found.submodule_search_locations:
        raise ImportError(f"{name} is not installed")
    spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
    spec.submodule_search_locations = list(found.submodule_search_locations)
    module = importlib.util.module_from_spec(spec)
    module.__path__ = list(found.submodule_search_locations)
    sys.modules[name] = module


def codeformer_arch() -> Any:
    """spandrel_extra_arches' CodeFormer Architecture; ImportError with the reason when it can't be had."""
    from webui.generation.upscaler_models import load_spandrel

    if not installed():
        raise ImportError(LICENCE_NOTE)
    load_spandrel()  # the real spandrel package, or its stand-in
    spandrel = sys.modules["spandrel"]
    if not all(hasattr(spandrel, n) for n in DESCRIPTOR_NAMES):
        descriptors = importlib.import_module("spandrel.__helpers.model_descriptor")
        for n in DESCRIPTOR_NAMES:
            setattr(spandrel, n, getattr(descriptors, n))
    _bare_package(PACKAGE)
    try:
        module = importlib.import_module(f"{PACKAGE}.architectures.CodeFormer")
        return module.CodeFormerArch()
    except Exception as e:  # another version's layout, a missing dependency (einops): say so
        raise ImportError(
            f"{PACKAGE} is installed but its CodeFormer architecture doesn't import here "
            f"({type(e).__name__}: {e}); {PIP} is the version Easel is tested with"
        ) from None


def load_codeformer(state: dict) -> Any:
    """The ImageModelDescriptor for a CodeFormer state dict; ValueError when it isn't one."""
    arch = codeformer_arch()
    if not arch.detect(state):
        raise ValueError("not a CodeFormer state dict")
    return arch.load(state)
