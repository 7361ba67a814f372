"""SD 3/3.5 skip-layer guidance (SLG), on diffusers' own StableDiffusion3Pipeline arguments (`skip_guidance_layers`,
`skip_layer_guidance_scale/start/stop`): at the steps inside the window the transformer runs once more on the positive
prompt with the listed joint blocks skipped, and (positive − skipped) × scale is added to the CFG prediction. Stability
recommends blocks 7, 8, 9 for SD 3.5 Medium. Off at scale 0 (the default): the pipeline call is then the one it was
without SLG, so the pixels are too.

Where it runs: txt2img (and the first pass of a hires fix) only. diffusers 0.42's StableDiffusion3Img2ImgPipeline,
StableDiffusion3InpaintPipeline and StableDiffusion3ControlNetPipeline take no SLG arguments, so img2img, inpainting
and ControlNet with SLG on are refused (422) rather than run without it; the hires pass runs without it, with a
warning. SLG needs CFG (the pipeline skips it at CFG scale 1) and is only for SD 3/3.5: both are refused too.

Names: no A1111-style infotext convention exists (SwarmUI's extension labels its parameters "[SLG] Scale",
"[SLG] Layer Target", "[SLG] Start Percent", "[SLG] End Percent"; SD.Next's script writes no infotext; ComfyUI's node
takes scale, layers, start_percent, end_percent), so Easel's are `slg_scale`, `slg_layers`, `slg_start`, `slg_end` in
the API and "SLG scale: 2.5, SLG layers: 7 8 9, SLG start: 0.01, SLG end: 0.2" in the infotext, written only when the
scale is above 0."""

from __future__ import annotations

import inspect
import math
import re
from typing import Any

from webui.errors import InvalidRequest

# SD 3/3.5 skip-layer guidance: a step inside its window runs one more transformer pass, on the conditional half of
# the CFG batch only (diffusers' StableDiffusion3Pipeline), so it costs half a measured step (a CFG step is the
# transformer on a batch of two); SLG is refused without CFG (generation/slg.py), so there is always that batch
SLG_PASS_COST = 0.5
MAX_BLOCK = 1023  # before the model is known; the transformer's own depth is checked when the job is planned
MAX_COUNT = 64
_SEPARATORS = re.compile(r"[\s,]+")


def parse_layers(value: Any) -> list[int]:
    """`slg_layers` as sorted unique block numbers, from "7,8,9", "7 8 9" (the infotext's form) or [7, 8, 9]. A
    ValueError (pydantic's 422) for anything else."""
    if value is None:
        return []
    if isinstance(value, str):
        if len(value) > 1000:
            raise ValueError("slg_layers is too long")
        tokens: list[Any] = [t for t in _SEPARATORS.split(value.strip()) if t]
    elif isinstance(value, (list, tuple)):
        tokens = list(value)
    else:
        raise ValueError("slg_layers takes block numbers: a list of integers or a string such as '7,8,9'")
    if len(tokens) > MAX_COUNT:
        raise ValueError(f"slg_layers names more than {MAX_COUNT} blocks")
    layers = []
    for token in tokens:
        if isinstance(token, bool) or not isinstance(token, (int, str)):
            raise ValueError(f"slg_layers: {token!r} is not a block number")
        text = str(token).strip()
        if not text.isdigit():
            raise ValueError(f"slg_layers: {text!r} is not a block number (0, 1, 2, …)")
        layer = int(text)
        if layer > MAX_BLOCK:
            raise ValueError(f"slg_layers: block {layer} is out of range")
        layers.append(layer)
    return sorted(set(layers))


def window_steps(steps: int, start: float, end: float) -> int:
    """How many of `steps` steps take SLG: diffusers' rule is step i with steps×start < i < steps×end."""
    return sum(1 for i in range(steps) if steps * start < i < steps * end)


def extra_steps(req: Any) -> int:
    """The steps' worth of extra work SLG adds to a request's first pass, for the cost guard (whole steps, rounded
    up): one more transformer pass on half the CFG batch for each step inside its window (SLG_PASS_COST)."""
    if getattr(req, "slg_scale", 0) <= 0:
        return 0
    return math.ceil(SLG_PASS_COST * window_steps(int(req.steps), float(req.slg_start), float(req.slg_end)))


def refuse_slg(req: Any, why: str) -> None:
    """InvalidRequest when the request turns SLG on where it can't run (`why`: where, and the reason)."""
    if getattr(req, "slg_scale", 0) > 0:
        raise InvalidRequest(f"skip-layer guidance (slg_scale {req.slg_scale:g}) {why}; set slg_scale to 0")


def plan_slg(req: Any, model: Any, plan: Any) -> dict[str, Any]:
    """The txt2img pipeline call's SLG arguments ({} when off), after checking the request against the model; its
    infotext fields go to `plan.extra_params`."""
    from webui.models.families import Family

    if req.slg_scale <= 0:
        return {}
    if model.probe.family != Family.SD3:
        refuse_slg(req, f"is for SD 3/3.5; the checkpoint is {model.probe.label}")
    depth = int(model.pipeline.transformer.config.num_layers)
    if not req.slg_layers:
        raise InvalidRequest("skip-layer guidance needs at least one block in slg_layers (SD 3.5 Medium: 7,8,9)")
    beyond = [i for i in req.slg_layers if i >= depth]
    if beyond:
        raise InvalidRequest(
            f"slg_layers {' '.join(map(str, beyond))}: {model.probe.label} has blocks 0 to {depth - 1} "
            f"({depth} joint transformer blocks)"
        )
    if req.cfg_scale <= 1:
        raise InvalidRequest(
            f"skip-layer guidance works with CFG: set CFG scale above 1 (it is {req.cfg_scale:g}) or slg_scale to 0"
        )
    plan.extra_params.update(
        {
            "SLG scale": req.slg_scale,
            "SLG layers": " ".join(map(str, req.slg_layers)),
            "SLG start": req.slg_start,
            "SLG end": req.slg_end,
        }
    )
    if not window_steps(req.steps, req.slg_start, req.slg_end):
        plan.warnings.append(
            f"skip-layer guidance: no step of {req.steps} falls between SLG start {req.slg_start:g} and SLG end "
            f"{req.slg_end:g} (a step i takes it when steps×start < i < steps×end); it had no effect"
        )
    if req.enable_hr:
        plan.warnings.append(
            "skip-layer guidance ran in the first pass only: the hires pass runs on diffusers' SD 3 img2img "
            "pipeline, which has no skip-layer guidance"
        )
    return {
        "skip_guidance_layers": list(req.slg_layers),
        "skip_layer_guidance_scale": req.slg_scale,
        "skip_layer_guidance_start": req.slg_start,
        "skip_layer_guidance_stop": req.slg_end,
    }


def check_pipeline(pipe: Any, kwargs: dict[str, Any]) -> None:
    """After the extensions' pipeline hooks: a swapped-in pipeline without SLG (ControlNet's) is refused, not run
    without it (its __call__ would raise a TypeError on the unknown argument)."""
    if "skip_guidance_layers" in kwargs and "skip_guidance_layers" not in inspect.signature(pipe.__call__).parameters:
        raise InvalidRequest(
            f"skip-layer guidance can't run with {type(pipe).__name__} (ControlNet): diffusers' pipeline has no "
            "skip-layer guidance; set slg_scale to 0"
        )
