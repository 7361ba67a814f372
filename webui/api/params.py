"""The API's image fields (init_images, mask: base64, data: or http(s) URLs). The request itself is prepared by
`Application.prepare` (webui/generation/prepare.py), the same for the UI and both APIs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from webui.errors import InvalidRequest
from webui.security import load_image_field

if TYPE_CHECKING:
    from webui.app import Application


def decode_img2img_inputs(req: BaseModel, application: Application) -> tuple[list[Any], Any]:
    """init_images and mask as PIL images: base64/data URLs, or http(s) URLs under the SSRF rules; 413 over the
    pixel limit; errors name the field."""
    images = [
        load_image_field(v, application, field=f"init_images[{i}]")
        for i, v in enumerate(getattr(req, "init_images", None) or [])
    ]
    if not images:
        raise InvalidRequest("init_images is empty: img2img needs at least one input image")
    mask = getattr(req, "mask", None)
    return images, (load_image_field(mask, application, field="mask") if mask else None)
