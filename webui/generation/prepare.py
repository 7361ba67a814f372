"""The one preparation of a generation request, for the UI, `/sdapi/v1` and `/easel/v1/jobs` alike
(`Application.prepare`, called by `Application._submit_generation`): A1111's `infotext` fills the fields the request
did not set, and the scripts it names must exist. Size rules live with the request (`requests.latent_floor`) and the
native-size default in `native.py` (used by the plan, the cost guard, the estimate and the UI), each in one place."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from webui.errors import InvalidRequest
from webui.infotext import infotext_to_request_fields, parse_infotext

R = TypeVar("R", bound=BaseModel)


def apply_infotext(req: R) -> R:
    """A1111's `infotext` field: every value the infotext holds fills a field the request did not set explicitly
    (pydantic's model_fields_set); the request's own override_settings win over the infotext's. The result is
    validated from `{**from_infotext, **explicit}`, so its fields_set is the explicit fields plus the filled ones."""
    text = getattr(req, "infotext", None)
    if not text:
        return req
    fields = infotext_to_request_fields(parse_infotext(text))
    explicit_names = set(req.model_fields_set)
    if "sampler_index" in explicit_names:
        explicit_names.add("sampler_name")  # the deprecated alias counts as the sampler being set
    known = type(req).model_fields
    filled = {k: v for k, v in fields.items() if k in known and k not in explicit_names and k != "override_settings"}
    explicit = req.model_dump(include=set(req.model_fields_set))
    if "override_settings" in fields:
        own = getattr(req, "override_settings", None) or {}
        explicit["override_settings"] = {**fields["override_settings"], **own}
    elif not filled:
        return req
    try:
        return type(req).model_validate({**filled, **explicit})
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise InvalidRequest(f"infotext gives an invalid value for {where}: {first.get('msg')}") from None


def check_scripts(req: BaseModel, host: Any, kind: str) -> None:
    """An unknown `script_name` or `alwayson_scripts` key is a 422 (A1111: "Script 'x' not found"), before queueing.
    Known ones are passed on untouched: the extension host runs them in the job."""

    def find(name: str):
        found = host.find_script(name, kind) if host is not None else None
        return found[1] if found else None

    name = getattr(req, "script_name", None)
    if name:
        script = find(name)
        if script is None or getattr(script, "always_on", False):
            raise InvalidRequest(
                f"Script '{name}' not found",
                detail=f"script_name: no {kind} script named {name!r}; GET /sdapi/v1/scripts lists them",
            )
    for key in getattr(req, "alwayson_scripts", None) or {}:
        script = find(str(key))
        if script is None or not getattr(script, "always_on", False):
            raise InvalidRequest(
                f"always on script {key} not found",
                detail=f"alwayson_scripts: no always-on {kind} script named {key!r}",
            )


def prepare_request(req: R, host: Any, kind: str) -> R:
    """Everything done to a generation request before it is queued: infotext fill, then the script checks."""
    req = apply_infotext(req)
    check_scripts(req, host, kind)
    return req
