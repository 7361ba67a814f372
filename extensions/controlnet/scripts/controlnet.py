"""ControlNet for Easel, on the public extension contract: preprocessors, the models in models/ControlNet/, the
accordion (lib/ui.py), and sd-webui-controlnet's API (`/controlnet/model_list`, `module_list`, `version`, `detect`,
also under /ext/controlnet/). Units arrive through `alwayson_scripts: {"controlnet": {"args": [unit, ...]}}` or the
UI and are applied in the `pipeline_call` event (see README.md in this folder)."""

from __future__ import annotations

import base64
import functools
import importlib
import io
import tempfile
from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field

from webui.extensions import api as contract
from webui.extensions.api import ExtensionHandle, Script, ScriptError

VERSION = 2  # sd-webui-controlnet's API version answer


def lib(name: str):
    """This extension's helper modules in lib/ (scripts/ holds only entry points), imported on first use: the host
    loads the extension as a package, so `..lib.<name>` is this extension's own, loaded once."""
    return importlib.import_module(f"..lib.{name}", __package__)


class DetectRequest(BaseModel):
    """sd-webui-controlnet's /detect body; numbers bounded as a unit's are (lib/units.py)."""

    model_config = ConfigDict(allow_inf_nan=False)

    controlnet_module: str = "none"
    controlnet_input_images: list[str] = Field(default_factory=list, max_length=64)
    controlnet_processor_res: int = Field(512, ge=-1, le=16384)  # and 64..control_net_max_resolution (below)
    controlnet_threshold_a: Optional[float] = Field(-1, ge=-1, le=1e4)
    controlnet_threshold_b: Optional[float] = Field(-1, ge=-1, le=1e4)


class ControlNetState:
    """Everything the extension keeps: the catalog, the loaded checkpoint's family, this job's units."""

    def __init__(self, ext: ExtensionHandle):
        self.ext = ext
        self.family: str | None = None
        self.cross_attention_dim: int | None = None
        self.units: list = []
        self._catalog = None

    def models_root(self) -> Path:
        configured = str(self.ext.settings.get("control_net_models_path") or "").strip()
        if configured:
            return Path(configured).expanduser()
        return Path(self.ext.models_dir("ControlNet"))

    @property
    def catalog(self):
        root = self.models_root()
        if self._catalog is None or self._catalog.root != root:
            models = lib("models")
            template = Path(contract.__file__).resolve().parent.parent / "models" / "configs" / "sd15" / "unet"
            self._catalog = models.ControlNetCatalog(
                root, template_dir=template, cache_dir=Path(tempfile.gettempdir()) / "easel-controlnet"
            )
        return self._catalog

    def max_res(self) -> int:
        return int(self.ext.settings.get("control_net_max_resolution"))

    def find_model(self, name: str, pipeline=None):
        """The catalog entry, checked against the checkpoint. Without the call's `pipeline` (units parsed before
        the job loads its checkpoint) only UNet ControlNets on UNet checkpoints are checked (the job may switch to
        or from FLUX/SD 3); with it the check is exact, FLUX/SD 3 widths against the transformer's."""
        models, flow = lib("models"), lib("flow_control")
        entry = self.catalog.find(name)
        try:
            config = self.catalog.config(entry)
            family = flow.pipeline_family(pipeline) if pipeline is not None else None
            if family is not None:
                flow.check_fits(entry.title, config, pipeline.transformer.config, family)
            elif pipeline is not None or not (flow.family_of_config(config) or self.family in flow.FAMILIES):
                models.check_compatible(
                    entry.title, config, family=self.family, cross_attention_dim=self.cross_attention_dim
                )
        except models.ControlNetModelError as e:
            raise ScriptError(str(e)) from None
        return entry

    def model_detail(self, title: str) -> dict | None:
        """/model_list's detail of one model (family, layout, why it can't be used), None for a name not here."""
        try:
            return self.catalog.detail(self.catalog.find(title))
        except KeyError:
            return None

    def load_model(self, unit, pipeline=None):
        models = lib("models")
        entry = self.find_model(unit.model, pipeline)
        # FLUX/SD 3: loaded at the transformer's dtype (its own cache entry), so a bf16 checkpoint never rounds the
        # cached float32 copy; the UNet families' follow the UNet's precision per call (apply._on, precision.py)
        flow = pipeline is not None and lib("flow_control").pipeline_family(pipeline)
        dtype = pipeline.transformer.dtype if flow else None
        try:
            return self.catalog.load(
                entry, dtype=dtype, keep=int(self.ext.settings.get("control_net_model_cache_size"))
            )
        except models.ControlNetModelError as e:
            raise ScriptError(str(e)) from None

    def on_pipeline_call(self, call):
        """`pipeline_call` hook: (pipeline, kwargs) with this job's units applied, or None without units."""
        if not self.units:
            return None
        pre, flow = lib("preprocessors"), lib("flow_control")
        family = flow.pipeline_family(call.pipeline)  # FLUX/SD 3: flow_control.py; the UNet families: apply.py
        applier = (
            functools.partial(flow.controlled_call, family=family, after=call.after)
            if family
            else lib("apply").controlled_call
        )
        return applier(
            call.pipeline,
            call.kwargs,
            call.kind,
            self.units,
            load_model=lambda unit: self.load_model(unit, call.pipeline),
            modules=pre.registry(pre.annotators_in(self.models_root())),
            run=pre.run,
            hires=call.hires,
            offload=getattr(call, "follow_offload", None),  # --medvram/--lowvram cover the ControlNets too
        )

    def check_flow_units(self, request, kind: str) -> None:
        """Refuse, before the job runs, FLUX/SD 3 units diffusers has no pipeline for (by the units' ControlNets:
        the job's checkpoint isn't loaded yet)."""
        flow = lib("flow_control")
        if getattr(request, "mask", None) is not None:
            kind = "inpaint"
        for unit in self.units:
            config = self.catalog.config(self.catalog.find(unit.model))
            family = flow.family_of_config(config)
            if family is None:
                continue
            reason = flow.unsupported_reason(config)
            if reason:
                raise ScriptError(f"ControlNet {unit.model!r}: {reason}")
            true_cfg = family == "flux" and float(getattr(request, "cfg_scale", 1) or 1) > 1
            hires = kind == "txt2img" and bool(getattr(request, "enable_hr", False))
            flow.check_request(family, kind, [unit], hires=hires, true_cfg=true_cfg)

    def parse(self, raw_units: list, kind: str) -> list:
        pre = lib("preprocessors")
        return lib("units").parse_units(
            raw_units,
            kind=kind,
            modules=pre.registry(pre.annotators_in(self.models_root())),
            find_model=self.find_model,
            max_res=self.max_res(),
        )


class ControlNetScript(Script):
    title = "ControlNet"
    visibility = "both"
    always_on = True

    def __init__(self, state: ControlNetState, n_units: int):
        self.state = state
        self.args = tuple(f"unit_{i}" for i in range(n_units))

    def process(self, request, **units: Any):
        kind = "img2img" if hasattr(request, "init_images") else "txt2img"
        raw = [units.get(name) for name in self.args]
        if raw and isinstance(raw[0], list) and all(r is None for r in raw[1:]):
            raw = raw[0]  # {"args": [[unit, ...]]}: some clients nest the list
        self.state.units = self.state.parse(raw, kind)
        self.state.check_flow_units(request, kind)
        return None

    def infotext_params(self, request, **units: Any) -> dict[str, str]:
        """sd-webui-controlnet's `ControlNet <i>: "Module: …, Model: …, Weight: …"`, one per enabled unit."""
        return {f"ControlNet {u.index}": lib("units").infotext(u) for u in self.state.units}

    def modules(self) -> dict:
        """The preprocessors the UI offers: the same registry the units are parsed against (ControlNetState.parse)."""
        pre = lib("preprocessors")
        return pre.registry(pre.annotators_in(self.state.models_root()))

    def ui_choices(self):
        """What the accordion offers, read from the state when the UI is built (the models list rescans on 🔄)."""
        units, pre = lib("units"), lib("preprocessors")
        return lib("ui").UnitChoices(
            modules=self.modules(),
            model_titles=self.state.catalog.titles,
            resize_modes=units.RESIZE_MODES,
            control_modes=units.CONTROL_MODES,
            max_res=self.state.max_res(),
            run=pre.run,
            model_detail=self.state.model_detail,
            checkpoint_family=lambda: self.state.family,
        )

    def ui(self, is_img2img: bool) -> dict[str, Any]:
        """The units as tabs in the accordion, each one ArgGroup giving the API's unit dict (lib/ui.py)."""
        return lib("ui").build_units(self.ui_choices(), self.args, is_img2img)

    def paste(self, params, is_img2img: bool) -> dict[str, Any]:
        """The units an infotext names (`ControlNet <i>`), without their images; the others are disabled. An
        infotext without ControlNet leaves the units as they are. The model is restored by title, else by name,
        else left as it is."""
        units, ui = lib("units"), lib("ui")
        found = {
            name: units.parse_infotext(str(params[f"ControlNet {i}"]))
            for i, name in enumerate(self.args)
            if str(params.get(f"ControlNet {i}") or "").strip()
        }
        if not found:
            return {}
        modules = [m.name for m in self.modules().values() if m.available]
        titles = self.state.catalog.titles()
        return {
            name: ui.paste_values(
                found.get(name), is_img2img, modules=modules, model=self._model_update(found.get(name), titles, ui)
            )
            for name in self.args
        }

    def _model_update(self, unit: dict | None, titles: list[str], ui) -> dict | None:
        wanted = str((unit or {}).get("model") or "").strip()
        if not wanted or wanted.lower() == "none":
            return None
        if wanted in titles:
            return ui.model_update(wanted, titles)
        try:
            return ui.model_update(self.state.catalog.find(wanted).title, titles)  # same name, other hash
        except KeyError:
            return None


def _b64_png(image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def setup(ext: ExtensionHandle) -> None:
    install(ext)


def install(ext: ExtensionHandle) -> ControlNetState:
    """Register everything on `ext`; returns the extension's state (tests inspect it)."""
    ext.add_setting(
        key="control_net_unit_count", default=3, label="Multi-ControlNet: number of units", minimum=1, maximum=10
    )
    ext.add_setting(
        key="control_net_models_path",
        default="",
        path=True,
        label="Extra path to scan for ControlNet models (used instead of models/ControlNet)",
    )
    # a guard itself: bounded, so a setting can't switch it off
    ext.add_setting(
        key="control_net_max_resolution",
        default=2048,
        label="Largest preprocessor resolution",
        minimum=64,
        maximum=8192,
    )
    ext.add_setting(
        key="control_net_model_cache_size",
        default=2,
        minimum=1,
        maximum=16,
        label="ControlNet models kept in RAM (most recently used)",
    )
    state = ControlNetState(ext)

    def on_model_loaded(info) -> None:
        state.family = info.family
        state.cross_attention_dim = info.cross_attention_dim

    def on_before_generate(request) -> None:
        state.units = []  # a job without the ControlNet script runs uncontrolled
        return None

    def model_list(update: bool = True) -> dict:
        """sd-webui-controlnet's list, and (Easel) each model's family, with why it can't be used when it can't."""
        entries = state.catalog.refresh()
        return {
            "model_list": [e.title for e in entries],
            "model_detail": {e.title: state.catalog.detail(e) for e in entries},
        }

    def module_list(alias_names: bool = False) -> dict:
        pre = lib("preprocessors")
        mods = pre.registry(pre.annotators_in(state.models_root()))
        detail = {
            m.name: {
                "model_free": m.model_free,
                "sliders": [
                    {"name": s.name, "value": s.value, "min": s.min, "max": s.max, "step": s.step} for s in m.sliders
                ],
            }
            for m in mods.values()
            if m.available
        }
        return {
            "module_list": list(detail),
            "module_detail": detail,
            "unavailable": {m.name: m.reason for m in mods.values() if not m.available},
        }

    def version() -> dict:
        return {"version": VERSION}

    def detect(body: DetectRequest) -> dict:
        from fastapi import HTTPException

        pre = lib("preprocessors")
        mods = pre.registry(pre.annotators_in(state.models_root()))
        name = body.controlnet_module.strip().lower()
        if name not in mods:
            raise HTTPException(422, f"unknown module {name!r}; known: {', '.join(mods)}")
        if not mods[name].available:
            raise HTTPException(422, f"module {name!r} is unavailable: {mods[name].reason}")
        if not body.controlnet_input_images:
            raise HTTPException(422, "controlnet_input_images is empty")
        if not 64 <= body.controlnet_processor_res <= state.max_res():
            raise HTTPException(422, f"controlnet_processor_res must be 64..{state.max_res()}")
        out = []
        for i, b64 in enumerate(body.controlnet_input_images):
            try:
                image = lib("units").decode_image(b64, f"controlnet_input_images[{i}]")
            except ScriptError as e:
                raise HTTPException(422, str(e)) from None
            if image is None:
                raise HTTPException(422, f"controlnet_input_images[{i}] is empty")
            try:
                detected = pre.run(
                    mods[name],
                    image,
                    resolution=body.controlnet_processor_res,
                    threshold_a=body.controlnet_threshold_a,
                    threshold_b=body.controlnet_threshold_b,
                )
            except ScriptError as e:
                raise HTTPException(422, str(e)) from None
            out.append(_b64_png(detected))
        return {"images": out, "info": "Success"}

    ext.on("model_loaded", on_model_loaded)
    ext.on("before_generate", on_before_generate)
    ext.add_api_route("/model_list", model_list, methods=["GET"])
    ext.add_api_route("/module_list", module_list, methods=["GET"])
    ext.add_api_route("/version", version, methods=["GET"])
    ext.add_api_route("/detect", detect, methods=["POST"])
    ext.add_script(ControlNetScript(state, int(ext.settings.get("control_net_unit_count"))))
    ext.on("pipeline_call", state.on_pipeline_call)
    return state
