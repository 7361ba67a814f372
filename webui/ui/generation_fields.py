"""The request fields txt2img and img2img share, and their values as the tabs show them: the field ↔ component map,
sampler and schedule names, seeds and infotexts, and the "Override settings" dropdown's values. No Gradio here."""

from __future__ import annotations

import html
import json
from typing import TYPE_CHECKING, Any

from webui.errors import InvalidRequest
from webui.infotext import parse_infotext
from webui.models import samplers

if TYPE_CHECKING:
    from webui.app import Application

SEND_TARGETS = ("img2img", "inpaint", "extras")

# request field -> component attribute, for what txt2img and img2img both have; "_" keys are UI-only values
COMMON_FIELDS: tuple[tuple[str, str], ...] = (
    ("prompt", "prompt"),
    ("negative_prompt", "negative"),
    ("sampler_name", "sampler"),
    ("scheduler", "scheduler"),
    ("steps", "steps"),
    ("width", "width"),
    ("height", "height"),
    ("cfg_scale", "cfg_scale"),
    ("distilled_cfg_scale", "distilled_cfg_scale"),
    ("seed", "seed"),
    ("n_iter", "batch_count"),
    ("batch_size", "batch_size"),
    ("_seed_extras", "seed_extras"),
    ("subseed", "subseed"),
    ("subseed_strength", "subseed_strength"),
    ("seed_resize_from_w", "seed_resize_w"),
    ("seed_resize_from_h", "seed_resize_h"),
    ("_overrides", "override"),
    ("styles", "styles_dropdown"),
)


def distilled_cfg_shown(application: Application) -> bool:
    """Whether the active checkpoint is FLUX.1, the family that takes "Distilled CFG Scale" (as Forge shows it)."""
    model = application.models.active
    return model is not None and model.probe.family.value == "flux"


# "Distilled CFG Scale" defaults: FLUX.1 dev's 3.5 (the request's default) and the 30 BFL recommends for Fill
DEV_DISTILLED_CFG, FILL_DISTILLED_CFG = 3.5, 30.0


def distilled_cfg_default(application: Application) -> float:
    """The "Distilled CFG Scale" that suits the active checkpoint: 30 for FLUX.1 Fill, else dev's 3.5."""
    from webui.generation.flow_fill import is_fill

    model = application.models.active
    return FILL_DISTILLED_CFG if model is not None and is_fill(model) else DEV_DISTILLED_CFG


def slg_shown(application: Application) -> bool:
    """Whether the active checkpoint is SD 3/3.5, the family that takes skip-layer guidance (generation/slg.py)."""
    model = application.models.active
    return model is not None and model.probe.family.value == "sd3"


def infotext_html(text: str | None) -> str:
    """An infotext shown under a gallery, as A1111 does: prompt lines, then the parameters line."""
    if not text:
        return ""
    return f'<div class="easel-infotext">{html.escape(text)}</div>'


def as_int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def canonical_sampler(name: str | None) -> str | None:
    """The dropdown name for a sampler name, alias or legacy combined name; None when Easel has no such sampler."""
    if not name:
        return None
    try:
        spec, _ = samplers.resolve(name, None)
    except InvalidRequest:
        return None
    return spec.name if spec.name in samplers.sampler_names() else None


def schedule_choices(sampler: str | None) -> list[str]:
    try:
        return samplers.schedule_types_for(sampler) or ["Automatic"]
    except (InvalidRequest, TypeError):
        return ["Automatic"]


def with_infotext(image, text: str):
    """A copy of the image carrying its infotext, so the gallery's PNG keeps the `parameters` chunk."""
    out = image.copy()
    out.info = {**getattr(image, "info", {}), "parameters": text}
    return out


def seed_of(infotext: str | None) -> int | None:
    seed = parse_infotext(infotext).get("Seed") if infotext else None
    return as_int(seed, -1) if seed is not None else None


def split_overrides(selected: list[str] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The "Override settings" dropdown's values (JSON {"option"|"field": name, "value": v}) → (options, fields)."""
    options, fields = {}, {}
    for raw in selected or []:
        try:
            entry = json.loads(raw)
        except (TypeError, ValueError):
            continue
        if isinstance(entry, dict) and "value" in entry:
            if entry.get("option"):
                options[entry["option"]] = entry["value"]
            elif entry.get("field"):
                fields[entry["field"]] = entry["value"]
    return options, fields
