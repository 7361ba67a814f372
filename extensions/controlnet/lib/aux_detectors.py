"""controlnet-aux detectors under sd-webui-controlnet's module names, run on the CPU from local files only.

controlnet-aux is installed with `pip install --no-deps` (it declares torchvision, timm and scikit-image, which must
never be pulled into Easel's pinned torch), so its package `__init__` — which imports every detector, including the
ones that need those packages — must never run. Each detector's submodule is imported on its own, through a stub
package (see `_package`). Weight-based detectors build the controlnet-aux network class and load the weights from
`<models>/ControlNet/annotators/` (`torch.load(weights_only=True)` or safetensors); nothing is downloaded. A detector
that can't run says why (`unavailable_reason`) and is never faked."""

from __future__ import annotations

import functools
import importlib
import importlib.machinery
import importlib.util
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from PIL import Image

PACKAGE = "controlnet_aux"
# The stub package's name: private, so a real `import controlnet_aux` elsewhere still gets the real package (and our
# stub never stands in for it), and sys.modules["controlnet_aux"] staying absent proves its __init__ never ran.
ALIAS = "_easel_controlnet_aux"
# import name → the pip distribution to install, for the "needs <pkg> (not installed)" reason
PIP_NAMES = {
    "cv2": "opencv-python-headless",
    "einops": "einops",
    "huggingface_hub": "huggingface-hub",
    "torch": "torch",
}
SHUFFLE_SEED = 0  # shuffle's noise comes from numpy's global RNG; a fixed seed makes the same input give the same map
# Held while shuffle swaps numpy's global RNG state, so concurrent shuffles can't interleave and stay deterministic.
_GLOBAL_RNG = threading.Lock()


class AuxDetectorError(ValueError):
    """A detector failed for a reason the user can fix (e.g. an annotator file that doesn't fit the network)."""


@dataclass(frozen=True)
class AuxDetector:
    """One controlnet-aux detector: what to import, which local weights it needs, and how to call it.

    `sliders` are (name, default, min, max, step) for threshold_a/threshold_b, as sd-webui-controlnet shows them
    (its resolution slider is Easel's processor_res, handled by the caller); `slider_args` names the detector keyword
    each slider feeds. `options` are fixed keywords that make a variant (`safe`, `coarse`)."""

    name: str
    submodule: str
    build: Callable[[ModuleType, list[Path]], Any]
    weights: tuple[str, ...] = ()
    packages: tuple[str, ...] = ("cv2", "torch")
    sliders: tuple[tuple[str, float, float, float, float], ...] = ()
    slider_args: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    image_resolution: bool = True  # whether the detector's __call__ takes image_resolution (lineart_standard doesn't)
    seeded: bool = False


def _package() -> ModuleType:
    """A stand-in for the `controlnet_aux` package: an empty module under ALIAS whose `__path__` is the installed
    package's folder. `import ALIAS.hed` then finds controlnet_aux/hed/ and runs only hed/__init__.py and what it
    imports itself (`..util` resolves to ALIAS.util); the real controlnet_aux/__init__.py, which imports every
    detector (dwpose, zoe, midas, … → torchvision, timm), is never executed. find_spec on a top-level name only
    locates the package, it doesn't import it."""
    if ALIAS in sys.modules:
        return sys.modules[ALIAS]
    found = importlib.util.find_spec(PACKAGE)
    if found is None or not found.submodule_search_locations:
        raise ImportError("controlnet-aux is not installed")
    spec = importlib.machinery.ModuleSpec(ALIAS, None, is_package=True)
    spec.submodule_search_locations = list(found.submodule_search_locations)
    stub = importlib.util.module_from_spec(spec)
    sys.modules[ALIAS] = stub
    return stub


def import_submodule(submodule: str) -> ModuleType:
    """controlnet_aux.<submodule>, imported without the package __init__ (cached in sys.modules like any import)."""
    _package()
    return importlib.import_module(f"{ALIAS}.{submodule}")


def _installed(name: str) -> bool:
    """Whether `import name` can work; a None entry in sys.modules is Python's "blocked" marker."""
    if name in sys.modules:
        return sys.modules[name] is not None
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def weight_paths(det: AuxDetector, annotators_dir: Path | None) -> tuple[list[Path], list[str]]:
    """(found paths, missing file names): each expected file, or the .safetensors file of the same stem."""
    found, missing = [], []
    for name in det.weights:
        candidates = (
            []
            if annotators_dir is None
            else [Path(annotators_dir) / name, Path(annotators_dir) / (Path(name).stem + ".safetensors")]
        )
        hit = next((p for p in candidates if p.is_file()), None)
        if hit is None:
            missing.append(name)
        else:
            found.append(hit)
    return found, missing


def unavailable_reason(det: AuxDetector, annotators_dir: Path | None) -> str | None:
    """Why `det` can't run here (None: it can): the package, a dependency, the weights, or its import failing."""
    if not _installed(PACKAGE):
        return "controlnet-aux is not installed"
    for name in det.packages:
        if not _installed(name):
            return f"needs {PIP_NAMES.get(name, name)} (not installed)"
    _, missing = weight_paths(det, annotators_dir)
    if missing:
        where = annotators_dir if annotators_dir is not None else "models/ControlNet/annotators (no models folder set)"
        return f"annotator weights {', '.join(missing)} not found in {where}"
    try:
        import_submodule(det.submodule)
    except Exception as e:  # noqa: BLE001 — any import failure is a reason to list, not a crash of the module list
        return f"controlnet_aux.{det.submodule} failed to import: {type(e).__name__}: {e}"
    return None


def _state_dict(path: Path) -> dict[str, Any]:
    """Tensors only, from the local file: safetensors, or a .pth read with weights_only=True so no pickled code runs.
    Upstream checkpoints may wrap them in {"state_dict": ...} and prefix keys with "module." (DataParallel)."""
    import torch

    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path), device="cpu")
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise AuxDetectorError(f"annotator weights {path} hold no state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_network(net, path: Path):
    """`net` (a freshly built controlnet-aux network) with the weights from `path`, in float32 eval mode."""
    try:
        net.load_state_dict(_state_dict(path), strict=True)
    except AuxDetectorError:
        raise
    except Exception as e:  # noqa: BLE001 — a wrong or damaged file: say which one
        raise AuxDetectorError(f"annotator weights {path} don't fit {type(net).__name__}: {e}") from None
    return net.float().eval()


def _hed(mod: ModuleType, paths: list[Path]):
    return mod.HEDdetector(load_network(mod.ControlNetHED_Apache2(), paths[0]))


def _pidi(mod: ModuleType, paths: list[Path]):
    return mod.PidiNetDetector(load_network(mod.pidinet(), paths[0]))


def _lineart(mod: ModuleType, paths: list[Path]):
    """LineartDetector holds a fine and a coarse network; the variant runs the one file it was given (as both)."""
    net = load_network(mod.Generator(3, 1, 3), paths[0])
    return mod.LineartDetector(net, net)


def _lineart_anime(mod: ModuleType, paths: list[Path]):
    import torch

    norm = functools.partial(torch.nn.InstanceNorm2d, affine=False, track_running_stats=False)
    return mod.LineartAnimeDetector(
        load_network(mod.UnetGenerator(3, 1, 8, 64, norm_layer=norm, use_dropout=False), paths[0])
    )


def _mlsd(mod: ModuleType, paths: list[Path]):
    return mod.MLSDdetector(load_network(mod.MobileV2_MLSD_Large(), paths[0]))


_NETS = ("cv2", "torch", "einops", "huggingface_hub")  # what the weight-based submodules import at the top
DETECTORS: tuple[AuxDetector, ...] = (
    AuxDetector("shuffle", "shuffle", lambda mod, _: mod.ContentShuffleDetector(), seeded=True),
    AuxDetector(
        "lineart_standard", "lineart_standard", lambda mod, _: mod.LineartStandardDetector(), image_resolution=False
    ),
    AuxDetector("softedge_hed", "hed", _hed, weights=("ControlNetHED.pth",), packages=_NETS),
    AuxDetector(
        "softedge_hedsafe", "hed", _hed, weights=("ControlNetHED.pth",), packages=_NETS, options={"safe": True}
    ),
    AuxDetector("softedge_pidinet", "pidi", _pidi, weights=("table5_pidinet.pth",), packages=_NETS),
    AuxDetector(
        "softedge_pidisafe", "pidi", _pidi, weights=("table5_pidinet.pth",), packages=_NETS, options={"safe": True}
    ),
    AuxDetector("lineart_realistic", "lineart", _lineart, weights=("sk_model.pth",), packages=_NETS),
    AuxDetector(
        "lineart_coarse", "lineart", _lineart, weights=("sk_model2.pth",), packages=_NETS, options={"coarse": True}
    ),
    AuxDetector("lineart_anime", "lineart_anime", _lineart_anime, weights=("netG.pth",), packages=_NETS),
    AuxDetector(
        "mlsd",
        "mlsd",
        _mlsd,
        weights=("mlsd_large_512_fp32.pth",),
        packages=("cv2", "torch", "huggingface_hub"),
        sliders=(("MLSD Value Threshold", 0.1, 0.01, 2.0, 0.01), ("MLSD Distance Threshold", 0.1, 0.01, 20.0, 0.01)),
        slider_args=("thr_v", "thr_d"),
    ),
)


def _seeded(call: Callable[[], Any]) -> Any:
    """Run `call` with numpy's global RNG seeded by SHUFFLE_SEED, restoring the caller's RNG state afterwards."""
    with _GLOBAL_RNG:
        saved = np.random.get_state()
        np.random.seed(SHUFFLE_SEED)
        try:
            return call()
        finally:
            np.random.set_state(saved)


def _to_rgb(detected, size: tuple[int, int]) -> Image.Image:
    """The detector's map as an RGB PIL image of `size` (controlnet-aux rounds its working size to multiples of 64)."""
    arr = np.asarray(detected)
    if arr.dtype != np.uint8:
        arr = arr.clip(0, 255).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    image = Image.fromarray(arr).convert("RGB")
    return image if image.size == size else image.resize(size, Image.BILINEAR)


def detect(det: AuxDetector, detector, image: Image.Image, thresholds: dict[str, float]) -> Image.Image:
    """Run a built controlnet-aux detector on `image` (already at processor_res) and return a map of its size."""
    resolution = min(image.size)
    kwargs: dict[str, Any] = {"detect_resolution": resolution, "output_type": "np", **det.options}
    if det.image_resolution:
        kwargs["image_resolution"] = resolution
    for arg, key in zip(det.slider_args, ("threshold_a", "threshold_b")):
        if key in thresholds:
            kwargs[arg] = float(thresholds[key])
    source = np.asarray(image.convert("RGB"), dtype=np.uint8)
    call = functools.partial(detector, source, **kwargs)
    return _to_rgb(_seeded(call) if det.seeded else call(), image.size)


def runner(det: AuxDetector, annotators_dir: Path | None) -> Callable[..., Image.Image]:
    """A preprocessor `run` for `det`: builds the detector from the local weights when called (nothing is kept
    between calls, so a replaced annotator file is picked up), then detects. Call only when it is available."""

    def run(image: Image.Image, **thresholds: float) -> Image.Image:
        paths, missing = weight_paths(det, annotators_dir)
        if missing:
            raise AuxDetectorError(f"annotator weights {', '.join(missing)} not found in {annotators_dir}")
        detector = det.build(import_submodule(det.submodule), paths)
        return detect(det, detector, image, thresholds)

    return run
