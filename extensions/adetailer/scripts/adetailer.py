"""The detailer, on the public extension contract: what the ADetailer extension does in A1111. After each image
is made, a detector from models/adetailer (YOLOv8 ONNX, see `contract.region_detectors`) finds regions (faces,
hands, people); each region is inpainted "only masked" at the job's size through `ImageContext.inpaint`, with the
tab's own prompt, denoising strength and mask blur; pixels outside the blurred masks stay the image's.

API: `alwayson_scripts: {"ADetailer": {"args": [true, false, {"ad_model": "face_yolov8n.pt", ...}]}}` (ADetailer's
field names; `.pt` names resolve to the `.onnx` export beside them), `GET /adetailer/v1/ad_model`,
`GET /adetailer/v1/version`; infotext as ADetailer writes it ("ADetailer model", … "ADetailer version")."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from webui.extensions import api as contract
from webui.extensions.api import ExtensionHandle, ImageContext, Script, ScriptError

VERSION = "1.0.0"  # this extension's version: written as "ADetailer version"
MAX_SEED = 2**63 - 1


def lib(name: str):
    """This extension's helper modules in lib/ (scripts/ holds only entry points), imported on first use: the host
    loads the extension as a package, so `..lib.<name>` is this extension's own, loaded once."""
    return importlib.import_module(f"..lib.{name}", __package__)


def choose(boxes: list, unit, size: tuple[int, int]) -> list:
    """ADetailer's mask filters: area ratio within [min, max] of the image, then the k largest (0: all)."""
    area = size[0] * size[1]
    kept = [
        b for b in boxes if unit.ad_mask_min_ratio <= (b[2] - b[0]) * (b[3] - b[1]) / area <= unit.ad_mask_max_ratio
    ]
    if unit.ad_mask_k_largest > 0:
        kept = sorted(kept, key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))[: unit.ad_mask_k_largest]
    return kept


class ADetailerScript(Script):
    title = "ADetailer"
    visibility = "both"
    always_on = True

    def __init__(self, ext: ExtensionHandle, n_units: int):
        self.ext = ext
        self.args = ("ad_enable", "skip_img2img", *(f"unit_{i}" for i in range(n_units)))
        self.units: list = []  # this job's enabled units (set by process)

    def models_dir(self) -> Path:
        return self.ext.models_dir("adetailer").parent

    def detectors(self) -> list:
        return contract.region_detectors(self.models_dir())

    def process(self, request, **args: Any):
        enable, skip_img2img, units = lib("units").parse_args(args, self.args)
        is_img2img = hasattr(request, "init_images")
        self.units = [u for u in units if u.enabled] if enable and not (is_img2img and skip_img2img) else []
        usable = {d.name: d for d in self.detectors()}
        for u in self.units:  # a missing detector fails the job before anything is generated
            found = usable.get(u.ad_model) or usable.get(Path(u.ad_model).stem + ".onnx")
            stem = Path(u.ad_model).stem
            if found is None:
                raise ScriptError(
                    f"ADetailer detector {u.ad_model!r} is missing: put {stem}.onnx (a YOLOv8 ONNX "
                    f"export: yolo export model={stem}.pt format=onnx) in models/adetailer"
                )
            if found.error:
                raise ScriptError(f"ADetailer detector {u.ad_model!r}: {found.error}")
        return None

    def infotext_params(self, request, **args: Any) -> dict[str, Any]:
        return lib("units").infotext(self.units, VERSION)

    def postprocess_image(self, image, ctx: ImageContext, **args: Any):
        if not self.units or ctx.inpaint is None:
            return None
        for unit in self.units:
            found = contract.detect_region_masks(
                self.models_dir(), unit.ad_model, image, unit.ad_confidence, unit.ad_dilate_erode
            )  # a -seg model's segments, else boxes
            masks = {box: mask for box, mask in found}
            for i, box in enumerate(choose([box for box, _ in found], unit, image.size)):
                fields: dict[str, Any] = {
                    "prompt": unit.prompt_for(i, ctx.prompt),
                    "negative_prompt": unit.prompt_for(i, ctx.negative_prompt, negative=True),
                    "denoising_strength": unit.ad_denoising_strength,
                    "mask_blur": unit.ad_mask_blur,
                    "inpaint_full_res": unit.ad_inpaint_only_masked,
                    "inpaint_full_res_padding": unit.ad_inpaint_only_masked_padding,
                    "seed": min(ctx.seed + i, MAX_SEED),
                }
                if unit.ad_use_inpaint_width_height:
                    fields.update(width=unit.ad_inpaint_width, height=unit.ad_inpaint_height)
                if unit.ad_use_steps:
                    fields["steps"] = unit.ad_steps
                if unit.ad_use_cfg_scale:
                    fields["cfg_scale"] = unit.ad_cfg_scale
                image = ctx.inpaint(image, masks[box], **fields)
        return image

    def ui(self, is_img2img: bool) -> dict[str, Any]:
        detectors = self.detectors()
        return lib("ui").build(
            self.args,
            lambda: [d.name for d in detectors if d.error is None],
            lambda: {d.name: d.error for d in detectors if d.error},
            is_img2img,
            lib("units").Unit().model_dump(),
        )

    def paste(self, params, is_img2img: bool) -> dict[str, Any]:
        units = lib("units").from_infotext(dict(params), len(self.args) - 2)
        if not any(units):
            return {}
        out: dict[str, Any] = {"ad_enable": True}
        for name, unit in zip(self.args[2:], units):
            out[name] = lib("ui").paste_values(unit)
        return out


def setup(ext: ExtensionHandle) -> None:
    install(ext)


def install(ext: ExtensionHandle) -> ADetailerScript:
    ext.add_setting(key="ad_max_models", default=2, label="Max ADetailer tabs", minimum=1, maximum=10)
    script = ADetailerScript(ext, int(ext.settings.get("ad_max_models")))

    def on_before_generate(request) -> None:
        script.units = []  # a job without the ADetailer script runs without it

    def ad_model() -> dict:
        detectors = script.detectors()
        return {
            "ad_model": ["None", *(d.name for d in detectors if d.error is None)],
            "unavailable": {d.name: d.error for d in detectors if d.error},
        }

    def version() -> dict:
        return {"version": VERSION}

    ext.on("before_generate", on_before_generate)
    ext.add_api_route("/v1/ad_model", ad_model, methods=["GET"])
    ext.add_api_route("/v1/version", version, methods=["GET"])
    ext.add_script(script)
    return script
