"""The line under a unit's Model dropdown: the family the picked ControlNet is for (from the catalog's detail, as
/controlnet/model_list's `model_detail` tells it), why it can't be used when it can't, and a warning when it is for
another family than the loaded checkpoint (the generation would be refused; said here at pick time, not only
then). The dropdown's value stays sd-webui-controlnet's `name [hash]` title. No Gradio here."""

from __future__ import annotations

import html
from typing import Any

from .flow_control import FAMILIES

NONE_MODEL = "None"
FAMILY_LABELS = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL", "flux": "FLUX.1", "sd3": "SD 3 / 3.5"}
LAYOUTS = {"diffusers": "diffusers folder", "single": "single file"}


def family_label(family: str | None) -> str:
    return FAMILY_LABELS.get(str(family or ""), "an unknown family")


def mismatch(cn_family: str, checkpoint_family: str | None) -> bool:
    """Whether a ControlNet of `cn_family` can't steer a checkpoint of `checkpoint_family` (models.check_compatible's
    rule by family: FLUX/SD 3 ControlNets and checkpoints only with their own family; between the UNet families a
    ControlNet of unknown family, e.g. a width no full-size model has, is left to the exact check at generation)."""
    if not checkpoint_family:
        return False
    if cn_family in FAMILIES or checkpoint_family in FAMILIES:
        return cn_family != checkpoint_family
    return cn_family != "unknown" and cn_family != checkpoint_family


def model_info_html(title: str | None, detail: dict[str, Any] | None, checkpoint_family: str | None) -> str:
    if not title or title == NONE_MODEL or detail is None:
        return ""
    e = html.escape
    family = str(detail.get("family") or "unknown")
    layout = LAYOUTS.get(str(detail.get("layout")), str(detail.get("layout") or ""))
    line = f'<div class="easel-unit-needs">For <b>{e(family_label(family))}</b> · {e(layout)}</div>'
    if detail.get("reason"):
        return line + f'<div class="easel-error">Can\'t be used: {e(str(detail["reason"]))}</div>'
    if mismatch(family, checkpoint_family):
        ckpt = family_label(checkpoint_family)
        return line + (
            f'<div class="easel-warn">The loaded checkpoint is {e(ckpt)}: this ControlNet is for '
            f"{e(family_label(family))}, so a generation with this unit is refused. Pick a ControlNet made for "
            f"{e(ckpt)}, or load a {e(family_label(family))} checkpoint.</div>"
        )
    return line
