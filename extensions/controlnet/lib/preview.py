"""A unit's Preview button: the preprocessed map of its control image, or why there is none (an error, or a notice
for an all-black map), as HTML under the unit."""

from __future__ import annotations

import html
from typing import Any

import gradio as gr
from PIL import Image

from .unit_fields import UnitChoices


class PreviewError(Exception):
    """Why a preview can't be made (shown to the user; nothing else happens)."""


def make_preview(
    choices: UnitChoices,
    image: Image.Image | None,
    module: str | None,
    resolution: Any,
    threshold_a: Any,
    threshold_b: Any,
    pixel_perfect: bool,
) -> Image.Image:
    """The preprocessed map for the unit's image. Pixel perfect has no generation size here: the image's own
    short side is the resolution (no rescale)."""
    if image is None:
        raise PreviewError(
            'Upload a control image to preview its map (with "Use the img2img input", the map is '
            "made from the img2img image when generating)."
        )
    pre = choices.modules.get(str(module or "none"))
    if pre is None:
        raise PreviewError(f"Unknown preprocessor {module!r}.")
    if not pre.available:
        raise PreviewError(f"Preprocessor {pre.name!r} is unavailable: {pre.reason}")
    res = min(image.size) if pixel_perfect else int(resolution or 512)
    if not pixel_perfect and not 64 <= res <= choices.max_res:
        raise PreviewError(f"Preprocessor resolution {res} is outside 64..{choices.max_res}.")
    try:
        return choices.run(
            pre,
            image.convert("RGB"),
            resolution=res,
            threshold_a=None if threshold_a is None else float(threshold_a),
            threshold_b=None if threshold_b is None else float(threshold_b),
        )
    except (ValueError, OSError) as e:
        raise PreviewError(f"Preprocessor {pre.name!r} failed: {e}") from None


# the look of .easel-error / .easel-notice is the page's (webui/ui/page_css.py): theme colours, light and dark
def error_html(message: str) -> str:
    return f'<div class="easel-error">{html.escape(message)}</div>'


def notice_html(message: str) -> str:
    return f'<div class="easel-notice">{html.escape(message)}</div>'


def empty_map_notice(image: Image.Image, module: str | None) -> str:
    """Say why a map is all black (e.g. MLSD on a picture without straight lines, canny on a flat one): it is the
    detector's honest answer, but it looks like a failure, and such a map steers generation by nothing."""
    if str(module or "none") == "none" or image.convert("L").getextrema()[1] > 0:
        return ""
    return notice_html(
        f"{module} found nothing to draw in this image (the map is all black), so this unit would "
        f"not steer the picture. Lower Threshold A/B, raise the resolution or pick another "
        f"preprocessor."
    )


def on_preview(choices: UnitChoices, *values: Any):
    """Preview's handler: (map, message); an error is shown under the unit and as a toast, an empty map gets a
    notice under the unit."""
    try:
        detected = make_preview(choices, *values)
    except PreviewError as e:
        gr.Warning(str(e))
        return None, error_html(str(e))
    return detected, empty_map_notice(detected, values[1])
