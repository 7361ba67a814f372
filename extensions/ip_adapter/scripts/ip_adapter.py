"""IP-Adapter (image prompts) on the public extension contract: `alwayson_scripts: {"IP-Adapter": {"args": [unit,
...]}}` with units `{"enabled", "image" (base64), "model" (a file of models/ipadapter), "weight" (0..2), "mask"
(base64, optional: white = where the image prompt applies), "guidance_start"/"guidance_end" (0..1: the fraction of
the steps it acts in)}`; the image encoder is a CLIPVisionModelWithProjection
folder or file of models/clip_vision (setting ip_adapter_image_encoder; empty: the first of the adapter's width),
FaceID's face models ONNX files of models/insightface (lib/faceid.py). The adapter's layout (lib/kinds.py: base,
Plus, Full Face, FaceID, FaceID Plus, XLabs FLUX) decides what it is fed. Applied in `pipeline_call` through
diffusers' load_ip_adapter (SD 1.x/SDXL: lib/adapter.py, FLUX.1: lib/flux.py), undone after each call
(`PipelineCall.after`). A unit at weight 0 is left out, so the image is the one without it, bit for bit. Infotext:
`IP-Adapter <i>: "model: …, weight: …"`, pasted back by `paste`."""

from __future__ import annotations

import base64
import importlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from webui.extensions import api as contract
from webui.extensions.api import ExtensionHandle, Script, ScriptError

MAX_PIXELS = 4096 * 4096


def lib(name: str):
    """This extension's helper modules in lib/ (scripts/ holds only entry points), imported on first use: the host
    loads the extension as a package, so `..lib.<name>` is this extension's own, loaded once."""
    return importlib.import_module(f"..lib.{name}", __package__)


@dataclass
class Unit:
    index: int
    image: Any
    model: str
    weight: float
    mask: Any = None
    guidance_start: float = 0.0  # sd-webui-controlnet's names: the fraction of the steps the unit acts in
    guidance_end: float = 1.0

    def scale_at(self, fraction: float) -> float:
        """The unit's weight at this point of the sampling (0 outside [guidance_start, guidance_end))."""
        return self.weight if self.guidance_start <= fraction < self.guidance_end else 0.0


def decode(value: Any, what: str):
    """A PIL image from the UI, or base64 / a data: URL from the API; None when empty."""
    from PIL import Image

    if value is None or value == "":
        return None
    if isinstance(value, Image.Image):
        return value
    if not isinstance(value, str):
        raise ScriptError(f"IP-Adapter {what} must be a base64 image")
    text = value.split(",", 1)[1] if value.startswith("data:") else value
    try:
        image = contract.open_image(io.BytesIO(base64.b64decode(text, validate=True)))
        if image.width * image.height > MAX_PIXELS:
            raise ScriptError(f"IP-Adapter {what} is larger than {MAX_PIXELS} pixels")
        image.load()
    except ScriptError:
        raise
    except Exception:
        raise ScriptError(f"IP-Adapter {what} is not a PNG/JPEG/WEBP image in base64") from None
    return image


def parse_unit(i: int, raw: Any, models_dir: Path) -> Unit | None:
    import math

    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ScriptError(f"IP-Adapter unit {i} must be an object")
    if not raw.get("enabled", True):
        return None
    weight = raw.get("weight", 1.0)
    if (
        isinstance(weight, bool)
        or not isinstance(weight, (int, float))
        or not math.isfinite(weight)
        or not 0 <= weight <= 2
    ):
        raise ScriptError(f"IP-Adapter unit {i}: weight must be a number from 0 to 2")
    window = []
    for key, default in (("guidance_start", 0.0), ("guidance_end", 1.0)):
        value = raw.get(key, default)
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or not 0 <= value <= 1
        ):
            raise ScriptError(f"IP-Adapter unit {i}: {key} must be a number from 0 to 1")
        window.append(float(value))
    if window[0] >= window[1]:
        raise ScriptError(f"IP-Adapter unit {i}: guidance_start must be below guidance_end")
    if weight == 0:
        return None
    model = raw.get("model")
    if not isinstance(model, str) or not model.strip() or model.strip().lower() == "none":
        raise ScriptError(f"IP-Adapter unit {i} is enabled without a model")
    lib("adapter").find_adapter(models_dir, model)  # missing → ScriptError naming the folder
    image = decode(raw.get("image"), f"unit {i} image")
    if image is None:
        raise ScriptError(f"IP-Adapter unit {i} is enabled without an image")
    mask = decode(raw.get("mask"), f"unit {i} mask")
    return Unit(
        i, image, model.strip(), float(weight), mask.convert("L") if mask is not None else None, window[0], window[1]
    )


class IPAdapterState:
    def __init__(self, ext: ExtensionHandle):
        self.ext = ext
        self.units: list[Unit] = []
        self.controlnet_units: list[Unit] = []  # IP-Adapter units sent as ControlNet units (module ip-adapter_*)
        self.pipe = None  # the pipeline of the call in progress (its adapters' scales follow the steps)
        self._encoders: dict[Path, Any] = {}
        self._faces: tuple[tuple, Any] | None = None
        self._adapters: dict[tuple[Path, float], dict] = {}

    @property
    def models_dir(self) -> Path:
        return self.ext.models_dir("ipadapter").parent

    def encoder(self, kind=None):
        """The configured image encoder (setting ip_adapter_image_encoder), else the first of models/clip_vision
        whose width fits the adapter's kind (e.g. ViT-H for ip-adapter_sd15, ViT-L for FLUX), else the first."""
        adapter = lib("adapter")
        wanted = str(self.ext.settings.get("ip_adapter_image_encoder") or "")
        path = adapter.find_encoder(self.models_dir, wanted)
        if not wanted and kind is not None:
            path = adapter.fitting_encoder(self.models_dir, kind) or path
        if path not in self._encoders:
            self._encoders = {path: adapter.Encoder.load(path)} | dict(list(self._encoders.items())[:1])
        return self._encoders[path]

    def faces(self):
        """insightface's detector and ArcFace of models/insightface (lib/faceid.py), loaded again when they change."""
        faceid = lib("faceid")
        key = tuple((p, p.stat().st_mtime) for p in faceid.model_files(self.models_dir))
        if self._faces is None or self._faces[0] != key:
            self._faces = (key, faceid.FaceEmbedder(self.models_dir))
        return self._faces[1]

    def adapter_state(self, name: str) -> dict:
        adapter = lib("adapter")
        path = adapter.find_adapter(self.models_dir, name)
        key = (path, path.stat().st_mtime)
        if key not in self._adapters:
            self._adapters = {key: adapter.read_adapter(path)} | dict(list(self._adapters.items())[:1])
        return self._adapters[key]

    def on_pipeline_call(self, call):
        if not self.units:
            return None
        adapter, kinds = lib("adapter"), lib("kinds")
        states = [self.adapter_state(u.model) for u in self.units]
        embeds, face_clip = [], {}
        for i, (u, state) in enumerate(zip(self.units, states)):
            kind = kinds.check_fits(u.model, state, call.pipeline, None)  # the family first, then the encoder
            encoder = self.encoder(kind) if kind.hidden_states or not kind.face else None
            if encoder is not None:
                kinds.check_fits(u.model, state, call.pipeline, encoder)
            if kind.face:  # FaceID: the ArcFace embedding of the face, zeros as negative
                face = self.faces().face(u.image)
                ident = torch.from_numpy(self.faces().embed(u.image, face)).float()[None]
                embeds.append((ident, torch.zeros_like(ident)))
                if encoder is not None:  # FaceID Plus: and the CLIP hidden states of the face aligned at 224 px
                    face_clip[i] = encoder.embed_pair(lib("faceid").align(u.image, face.landmarks, 224), True)
                continue
            if kind.denoiser == "flux":
                embeds.append(lib("flux").embed_pair(encoder, u.image))
            else:
                embeds.append(encoder.embed_pair(u.image, kind.hidden_states))
        if kinds.denoiser_of(call.pipeline) == "flux":
            pipe, kwargs = lib("flux").apply(call, self.units, states, embeds)
        else:
            pipe, kwargs = adapter.apply(call, self.units, states, embeds)
        for i, pair in face_clip.items():  # Plus v2 adds the face embedding's tokens back (its `shortcut`)
            shortcut = "v2" in self.units[i].model.lower()
            lib("faceid").set_clip_embeds(pipe, i, pair, kwargs, shortcut)
        self.pipe = pipe
        call.after(self._call_ended)
        call.on_step(self.on_step_end)  # this call's steps only: no global step_end hook (it would keep every job
        return pipe, kwargs  # off the Ray workers, docs/scaling.md)

    def _call_ended(self) -> None:
        self.pipe = None

    def on_step_end(self, info) -> None:
        """After step `info.step` of `info.total`: the scales for the next step (guidance start/end)."""
        if self.pipe is None or not self.units:
            return None
        if any(u.guidance_start > 0 or u.guidance_end < 1 for u in self.units):
            lib("adapter").set_scales(self.pipe, self.units, info.step / max(1, info.total))
        return None


class IPAdapterScript(Script):
    title = "IP-Adapter"
    visibility = "both"
    always_on = True

    def __init__(self, state: IPAdapterState, n_units: int):
        self.state = state
        self.args = tuple(f"unit_{i}" for i in range(n_units))

    def process(self, request, **units: Any):
        raw = [units.get(n) for n in self.args]
        if raw and isinstance(raw[0], list) and all(r is None for r in raw[1:]):
            raw = raw[0]
        parsed = [parse_unit(i, r, self.state.models_dir) for i, r in enumerate(raw)]
        self.state.units = self.state.controlnet_units + [u for u in parsed if u is not None]
        return None

    def infotext_params(self, request, **units: Any) -> dict[str, str]:
        return {
            f"IP-Adapter {u.index}": f"model: {u.model}, weight: {u.weight:g}, mask: {u.mask is not None}"
            + (
                f", start: {u.guidance_start:g}, end: {u.guidance_end:g}"
                if u.guidance_start > 0 or u.guidance_end < 1
                else ""
            )
            for u in self.state.units
        }

    def paste(self, params, is_img2img: bool) -> dict[str, Any]:
        """The units an infotext names (`IP-Adapter <i>`: model, weight, start/end), without their images; the
        others are disabled. An infotext without IP-Adapter leaves the units as they are."""
        ui = lib("ui")
        found = {
            name: ui.parse_infotext(str(params[f"IP-Adapter {i}"]))
            for i, name in enumerate(self.args)
            if str(params.get(f"IP-Adapter {i}") or "").strip()
        }
        if not found:
            return {}
        models = [p.name for p in lib("adapter").adapter_files(self.state.models_dir)]
        return {name: ui.paste_values(found.get(name), models) for name in self.args}

    def ui(self, is_img2img: bool) -> dict[str, Any]:
        names = [p.name for p in lib("adapter").adapter_files(self.state.models_dir)]
        faceid = lib("faceid").unavailable(self.state.models_dir) if any("faceid" in n.lower() for n in names) else None
        return lib("ui").build(self.args, names, is_img2img, note=f"FaceID: {faceid}" if faceid else "")


def setup(ext: ExtensionHandle) -> None:
    install(ext)


def install(ext: ExtensionHandle) -> IPAdapterState:
    ext.add_setting(key="ip_adapter_unit_count", default=2, label="IP-Adapter units", minimum=1, maximum=8)
    ext.add_setting(
        key="ip_adapter_image_encoder",
        default="",
        label="IP-Adapter image encoder (a folder or .safetensors file of models/clip_vision; empty: the first)",
    )
    state = IPAdapterState(ext)

    def on_before_generate(request) -> None:
        """sd-webui-controlnet clients send IP-Adapter as a ControlNet unit (`module: ip-adapter_clip_sd15`,
        `model: ip-adapter_sd15 [hash]`); the ControlNet extension leaves those units to this one."""
        found = []
        for raw in lib("adapter").from_controlnet_units(getattr(request, "alwayson_scripts", None)):
            unit = parse_unit(raw.pop("index"), raw, state.models_dir)
            if unit is not None:
                found.append(unit)
        state.units = state.controlnet_units = found

    def models() -> dict:
        adapter = lib("adapter")
        return {
            "models": [p.name for p in adapter.adapter_files(state.models_dir)],
            "image_encoders": [d.name for d in adapter.encoder_paths(state.models_dir)],
        }

    def modules() -> dict:
        """sd-webui-controlnet's IP-Adapter module names, each available or with why not (e.g. FaceID's files)."""
        encoders = lib("adapter").encoder_paths(state.models_dir)
        return {"modules": lib("kinds").modules(encoders, lib("faceid").unavailable(state.models_dir))}

    ext.on("before_generate", on_before_generate)
    ext.on("pipeline_call", state.on_pipeline_call)
    ext.add_api_route("/models", models, methods=["GET"])
    ext.add_api_route("/modules", modules, methods=["GET"])
    ext.add_script(IPAdapterScript(state, int(ext.settings.get("ip_adapter_unit_count"))))
    return state
