"""The ADetailer accordion: enable, skip img2img, and one tab per unit (each one ArgGroup giving the API's unit
dict)."""

from __future__ import annotations

from typing import Any, Callable

import gradio as gr

from webui.extensions.api import ArgGroup

KEYS = (
    "ad_model",
    "ad_prompt",
    "ad_negative_prompt",
    "ad_confidence",
    "ad_dilate_erode",
    "ad_mask_blur",
    "ad_denoising_strength",
    "ad_inpaint_only_masked",
    "ad_inpaint_only_masked_padding",
)
NONE = "None"


def combine(*values: Any) -> dict[str, Any]:
    return {k: v for k, v in zip(KEYS, values) if v is not None}


def build(
    names: tuple[str, ...],
    models: Callable[[], list[str]],
    unavailable: Callable[[], dict[str, str]],
    is_img2img: bool,
    default_unit: dict[str, Any],
) -> dict[str, Any]:
    kind = "img2img" if is_img2img else "txt2img"
    out: dict[str, Any] = {}
    out[names[0]] = gr.Checkbox(False, label="Enable ADetailer", elem_id=f"{kind}_ad_enable")
    out[names[1]] = gr.Checkbox(False, label="Skip img2img", visible=is_img2img, elem_id=f"{kind}_ad_skip_img2img")
    missing = unavailable()
    if missing:
        gr.Markdown(
            "Detectors that can't run yet: " + "; ".join(f"**{n}**: {why}" for n, why in missing.items()),
            elem_id=f"{kind}_ad_unavailable",
        )
    with gr.Tabs(elem_id=f"{kind}_ad_units"):
        for i, name in enumerate(names[2:]):
            prefix = f"{kind}_ad_unit_{i}"
            with gr.Tab(["1st", "2nd", "3rd", "4th"][i] if i < 4 else f"{i + 1}th", elem_id=f"{prefix}_tab"):
                c = {}
                c["ad_model"] = gr.Dropdown(
                    [NONE, *models()],
                    value=models()[0] if (i == 0 and models()) else NONE,
                    label="ADetailer detector",
                    elem_id=f"{prefix}_model",
                )
                c["ad_prompt"] = gr.Textbox(
                    "", lines=2, label="ADetailer prompt (empty: the main prompt)", elem_id=f"{prefix}_prompt"
                )
                c["ad_negative_prompt"] = gr.Textbox(
                    "", lines=2, label="ADetailer negative prompt", elem_id=f"{prefix}_negative_prompt"
                )
                with gr.Row():
                    c["ad_confidence"] = gr.Slider(
                        0, 1, value=0.3, step=0.01, label="Detection model confidence", elem_id=f"{prefix}_confidence"
                    )
                    c["ad_dilate_erode"] = gr.Slider(
                        -128,
                        128,
                        value=4,
                        step=4,
                        label="Mask erosion (-) / dilation (+)",
                        elem_id=f"{prefix}_dilate_erode",
                    )
                with gr.Row():
                    c["ad_mask_blur"] = gr.Slider(
                        0, 64, value=4, step=1, label="Inpaint mask blur", elem_id=f"{prefix}_mask_blur"
                    )
                    c["ad_denoising_strength"] = gr.Slider(
                        0,
                        1,
                        value=0.4,
                        step=0.01,
                        label="Inpaint denoising strength",
                        elem_id=f"{prefix}_denoising_strength",
                    )
                with gr.Row():
                    c["ad_inpaint_only_masked"] = gr.Checkbox(
                        True, label="Inpaint only masked", elem_id=f"{prefix}_inpaint_only_masked"
                    )
                    c["ad_inpaint_only_masked_padding"] = gr.Slider(
                        0,
                        256,
                        value=32,
                        step=4,
                        label="Inpaint only masked padding, pixels",
                        elem_id=f"{prefix}_inpaint_padding",
                    )
            out[name] = ArgGroup(components=[c[k] for k in KEYS], combine=combine, describe=default_unit)
    return out


def paste_values(unit: dict[str, Any] | None) -> list[Any]:
    """One value per ArgGroup component; a tab the infotext doesn't name is switched off (model None)."""
    if unit is None:
        return [NONE if k == "ad_model" else None for k in KEYS]
    return [unit.get(k) for k in KEYS]
