"""Request preparation shared by the A1111 routes and the async jobs API: `infotext` filling unset fields,
`script_name`/`alwayson_scripts` checks, and remote image fields."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from webui.errors import InvalidRequest
from webui.infotext import infotext_to_request_fields, parse_infotext
from webui.security import load_image_field

if TYPE_CHECKING:
    from webui.app import Application

R = TypeVar("R", bound=BaseModel)


def apply_infotext(req: R) -> R:
    """A1111's `infotext` field: every value the infotext holds fills a field the request did not set explicitly
    (pydantic's model_fields_set); the request's own override_settings win over the infotext's."""
    text = getattr(req, "infotext", None)
    if not text:
        return req
    fields = infotext_to_request_fields(parse_infotext(text))
    explicit = set(req.model_fields_set)
    if "sampler_index" in explicit:
        explicit.add("sampler_name")  # the deprecated alias counts as the sampler being set
    known = type(req).model_fields
    update: dict[str, Any] = {}
    for key, value in fields.items():
        if key == "override_settings":
            update[key] = {**value, **(getattr(req, "override_settings", None) or {})}
        elif key in known and key not in explicit:
            update[key] = value
    if not update:
        return req
    data = req.model_dump()
    data.update(update)
    try:
        new = type(req).model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise InvalidRequest(f"infotext gives an invalid value for {where}: {first.get('msg')}") from None
    object.__setattr__(new, "__pydantic_fields_set__", set(req.model_fields_set) | set(update))
    return new


def _find_script(application: Application, name: str, kind: str):
    found = application.extensions.find_script(name, kind)
    return found[1] if found else None


def check_scripts(req: BaseModel, application: Application, *, is_img2img: bool) -> None:
    """An unknown `script_name` or `alwayson_scripts` key is a 422 (A1111: "Script 'x' not found"), before queueing.
    Known ones are passed on untouched: the extension host runs them in the job."""
    kind = "img2img" if is_img2img else "txt2img"
    name = getattr(req, "script_name", None)
    if name:
        script = _find_script(application, name, kind)
        if script is None or getattr(script, "always_on", False):
            raise InvalidRequest(f"Script '{name}' not found", detail=f"script_name: no {kind} script named "
                                 f"{name!r}; GET /sdapi/v1/scripts lists them")
    for key in (getattr(req, "alwayson_scripts", None) or {}):
        script = _find_script(application, str(key), kind)
        if script is None or not getattr(script, "always_on", False):
            raise InvalidRequest(f"always on script {key} not found",
                                 detail=f"alwayson_scripts: no always-on {kind} script named {key!r}")


def prepare_request(req: R, application: Application, *, is_img2img: bool) -> R:
    """Everything done to a generation request at the edge, before it is queued."""
    check_scripts(req, application, is_img2img=is_img2img)
    return apply_infotext(req)


def decode_img2img_inputs(req: BaseModel, application: Application) -> tuple[list[Any], Any]:
    """init_images and mask as PIL images: base64/data URLs, or http(s) URLs under the SSRF rules; 413 over the
    pixel limit; errors name the field."""
    images = [load_image_field(v, application, field=f"init_images[{i}]")
              for i, v in enumerate(getattr(req, "init_images", None) or [])]
    if not images:
        raise InvalidRequest("init_images is empty: img2img needs at least one input image")
    mask = getattr(req, "mask", None)
    return images, (load_image_field(mask, application, field="mask") if mask else None)
