"""/sdapi/v1 routes about models and options: sd-models, sd-vae, loras, embeddings, hypernetworks, options, and the
refresh/unload/reload actions. Loading and unloading go through the job queue, never under a running generation."""

from typing import TYPE_CHECKING, Any, Optional, Union

from fastapi import APIRouter, Body
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, create_model

from webui.api.schemas import HypernetworkItem, LoraItem, SDModelItem, SDVaeItem

if TYPE_CHECKING:
    from webui.app import Application


def options_model(defs: dict[str, Any], *, name: str, with_defaults: bool) -> type[BaseModel]:
    """A pydantic model of every known option (for the OpenAPI schema and type checks); other keys pass through."""
    fields: dict[str, Any] = {}
    # Numbers are strict here: pydantic's lax mode turned JSON `true` into 1 before the option check saw it, so a
    # boolean became a budget of 1 MB. Strings and integral floats still reach the check (coerce), which parses them.
    numbers: dict[Any, Any] = {int: Union[StrictInt, StrictFloat, str], float: Union[StrictFloat, str]}
    for key, d in defs.items():
        kind = numbers.get(d.kind) or (d.kind if d.kind in (str, bool) else Any)
        default = d.default if with_defaults else None
        fields[key] = (Optional[kind], Field(default, description=d.label))
    return create_model(name, __config__=ConfigDict(extra="allow"), **fields)


def _field(item: Any, key: str, default: Any = None) -> Any:
    return item.get(key, default) if isinstance(item, dict) else getattr(item, key, default)


def lora_items(application: "Application") -> list[LoraItem]:
    """The LoRA service's list (dicts) as A1111's items."""
    out = []
    for item in application.loras.list():
        name = str(_field(item, "name", ""))
        out.append(
            LoraItem(
                name=name,
                alias=str(_field(item, "alias", None) or name),
                path=str(_field(item, "path", "")),
                metadata=dict(_field(item, "metadata", None) or {}),
                family=_field(item, "family", None),
            )
        )
    return out


def add_model_routes(r: APIRouter, app: "Application") -> None:
    GetOptions = options_model(app.options.defs, name="Options", with_defaults=True)
    SetOptions = options_model(app.options.defs, name="OptionsUpdate", with_defaults=False)

    @r.get("/options", response_model=GetOptions)
    def get_options() -> JSONResponse:
        # the schema documents the options; the values go out as stored (a hand-edited config.json is no 500)
        return JSONResponse(jsonable_encoder(app.options.all()))

    @r.post("/options", response_model=None)
    def set_options(changes: SetOptions = Body(...)) -> None:  # type: ignore[valid-type]
        app.set_options(changes.model_dump(exclude_unset=True))  # type: ignore[attr-defined]  # a made model

    @r.get("/sd-models", response_model=list[SDModelItem])
    def sd_models() -> list[SDModelItem]:
        return [
            SDModelItem(
                title=i.title,
                model_name=i.model_name,
                hash=i.shorthash,
                sha256=i.sha256,
                filename=str(i.path),
                config=None,
            )
            for i in app.catalog.list()
        ]

    @r.post("/refresh-checkpoints", response_model=None)
    def refresh_checkpoints() -> None:
        app.models.refresh()

    @r.get("/sd-vae", response_model=list[SDVaeItem])
    def sd_vae() -> list[SDVaeItem]:
        return [SDVaeItem(model_name=v.model_name, filename=str(v.path)) for v in app.models.vaes]

    @r.post("/refresh-vae", response_model=None)
    def refresh_vae() -> None:
        app.models.refresh()

    @r.get("/loras", response_model=list[LoraItem])
    def loras() -> list[LoraItem]:
        return lora_items(app)

    @r.post("/refresh-loras", response_model=None)
    def refresh_loras() -> None:
        app.loras.refresh()

    @r.get("/hypernetworks", response_model=list[HypernetworkItem])
    def hypernetworks() -> list[HypernetworkItem]:
        return []  # Easel has no hypernetworks (an honest empty list)

    @r.post("/unload-checkpoint", response_model=dict[str, Any])
    def unload_checkpoint() -> dict[str, Any]:
        app.jobs.run("unload-checkpoint", {}, lambda job: app.models.unload(), record=False)
        return {}

    @r.post("/reload-checkpoint", response_model=dict[str, Any])
    def reload_checkpoint() -> dict[str, Any]:
        def work(job) -> Any:
            if app.models.active is not None:
                return app.models.reload()
            return app.models.load(app.options.get("sd_model_checkpoint") or None)

        app.jobs.run("reload-checkpoint", {}, work, record=False)
        return {}
