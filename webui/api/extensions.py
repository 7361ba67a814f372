"""Extension routes: A1111's /sdapi/v1/extensions, /scripts and /script-info; Easel's install/enable/disable/update/
uninstall under /easel/v1/extensions; and every route extensions registered, served at /ext/<name><path>.

Mount order matters: include these before the Gradio UI is mounted at "/" (a mount at "/" answers every path), and
before the sdapi router so these /sdapi/v1 routes are the ones that answer.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any, Optional

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from webui.api.errors import error_body
from webui.errors import EaselError
from webui.extensions.hooks import ScriptCatalog
from webui.extensions.manager import ExtensionInfo, manager_for

if TYPE_CHECKING:
    from webui.app import Application

log = logging.getLogger("easel.api")


class ExtensionItem(BaseModel):
    """A1111's ExtensionItem, plus Easel's builtin/status/error/update."""

    name: str
    remote: Optional[str] = None
    branch: Optional[str] = None
    commit_hash: Optional[str] = None
    commit_date: Optional[int] = None
    version: Optional[str] = None
    enabled: bool = True
    builtin: bool = False
    status: str = "ok"
    error: Optional[str] = None
    update: Optional[str] = None


class InstallRequest(BaseModel):
    url: str = Field(..., description="a git URL, a local folder or a file:// URL")
    branch: Optional[str] = Field(None, description="branch to check out (default: the remote's default)")
    name: Optional[str] = Field(None, description="folder name (default: from the URL)")


class AvailableResponse(BaseModel):
    extensions: list[dict[str, Any]] = Field(default_factory=list)


class ScriptArgItem(BaseModel):
    """A1111's ScriptArg plus `name`, the key to use when sending args by name."""

    name: Optional[str] = None
    label: Optional[str] = None
    value: Optional[Any] = None
    minimum: Optional[Any] = None
    maximum: Optional[Any] = None
    step: Optional[Any] = None
    choices: Optional[list[Any]] = None


class ScriptInfoItem(BaseModel):
    name: Optional[str] = None
    is_alwayson: Optional[bool] = None
    is_img2img: Optional[bool] = None
    args: list[ScriptArgItem] = Field(default_factory=list)


class ScriptsResponse(BaseModel):
    txt2img: list[str]
    img2img: list[str]


def _item(info: ExtensionInfo) -> ExtensionItem:
    return ExtensionItem(
        name=info.name,
        remote=info.remote,
        branch=info.branch,
        commit_hash=info.commit_hash,
        commit_date=info.commit_date,
        version=info.version,
        enabled=info.enabled,
        builtin=info.builtin,
        status=info.status,
        error=info.error,
        update=info.update,
    )


def script_catalog(application: Application) -> ScriptCatalog:
    """The Application's script catalog (`application.scripts`), made on first use when the app has none."""
    if application.scripts is None:
        application.scripts = ScriptCatalog(application.extensions, ui_context=_throwaway_blocks)
    return application.scripts


def _throwaway_blocks():
    """A Blocks to build a script's ui() in, only to read its components' labels, defaults and ranges."""
    import gradio as gr

    return gr.Blocks(analytics_enabled=False)


def build_extensions_router(application: Application) -> APIRouter:
    r = APIRouter(tags=["extensions"])
    manager = manager_for(application)
    script_catalog(application)  # request checks (webui.api.params) read application.scripts

    @r.get("/sdapi/v1/extensions", response_model=list[ExtensionItem])
    def list_extensions() -> list[ExtensionItem]:
        return [_item(i) for i in manager.list()]

    @r.post("/easel/v1/extensions/install", response_model=ExtensionItem)
    def install(body: InstallRequest) -> ExtensionItem:
        """Clone and install requirements; the extension loads at the next start (status "restart to load")."""
        return _item(manager.install(body.url, branch=body.branch, name=body.name))

    @r.post("/easel/v1/extensions/check-updates", response_model=dict[str, str])
    def check_updates() -> dict[str, str]:
        return manager.check_updates()

    @r.get("/easel/v1/extensions/available", response_model=AvailableResponse)
    def available() -> AvailableResponse:
        """Entries of the index set in Settings (extensions_index_url); 409 when none is set, 502 with the reason if it
        can't be read."""
        return AvailableResponse(extensions=manager.available())

    @r.post("/easel/v1/extensions/{name}/enable", response_model=ExtensionItem)
    def enable(name: str) -> ExtensionItem:
        return _item(manager.set_enabled(name, True))

    @r.post("/easel/v1/extensions/{name}/disable", response_model=ExtensionItem)
    def disable(name: str) -> ExtensionItem:
        return _item(manager.set_enabled(name, False))

    @r.post("/easel/v1/extensions/{name}/update", response_model=ExtensionItem)
    def update(name: str) -> ExtensionItem:
        return _item(manager.update(name))

    @r.delete("/easel/v1/extensions/{name}", response_model=dict[str, str])
    def uninstall(name: str) -> dict[str, str]:
        manager.uninstall(name)
        return {"uninstalled": name}

    @r.get("/sdapi/v1/scripts", response_model=ScriptsResponse)
    def scripts() -> ScriptsResponse:
        # names only: describing the arguments would build every script's ui() (Gradio), and webuiapi calls this
        # route each time a client is made
        host = application.extensions
        return ScriptsResponse(
            **{
                kind: [s.title.lower() for _, s in (host.scripts(kind) if host else [])]
                for kind in ("txt2img", "img2img")
            }
        )  # A1111 lists lower-cased titles

    @r.get("/sdapi/v1/script-info", response_model=list[ScriptInfoItem])
    def script_info() -> list[ScriptInfoItem]:
        catalog = script_catalog(application)
        return [
            ScriptInfoItem(
                name=s.name.lower(),
                is_alwayson=s.is_alwayson,
                is_img2img=is_img2img,
                args=[ScriptArgItem(**a) for a in s.args],
            )
            for is_img2img in (False, True)
            for s in catalog.list(is_img2img)
        ]

    return r


def _route_class(host, rec) -> type[APIRoute]:
    """Routes of one extension: answered only while it is active; an unexpected exception is a 500 JSON error,
    and the extension is reported (and disabled for the session, like a raising hook)."""

    class ExtensionRoute(APIRoute):
        def get_route_handler(self):
            handler = super().get_route_handler()

            async def guarded(request: Request):
                if not rec.active:
                    return JSONResponse(
                        error_body(
                            "NotFound", f"extension {rec.name} is not active" + (f": {rec.error}" if rec.error else "")
                        ),
                        status_code=404,
                    )
                try:
                    return await handler(request)
                except (StarletteHTTPException, RequestValidationError, EaselError):
                    raise  # the extension's deliberate answers, and bad input: the usual error bodies
                except Exception as e:
                    host.report(rec, f"route {request.url.path} raised")
                    return JSONResponse(error_body(type(e).__name__, f"extension {rec.name}: {e}"), status_code=500)

            return guarded

    return ExtensionRoute


# Top-level names an extension's `route_alias` may not take: Easel's own API and the UI's routes.
RESERVED_ALIASES = {
    "sdapi",
    "easel",
    "ext",
    "docs",
    "openapi.json",
    "redoc",
    "gradio_api",
    "file",
    "assets",
    "static",
    "config",
    "login",
    "logout",
    "queue",
    "upload",
    "theme.css",
    "info",
    "heartbeat",
}


def route_aliases(host) -> dict[str, str]:
    """{extension name: "/alias"} from the manifests' `route_alias` (e.g. ControlNet's "/controlnet", which
    sd-webui-controlnet clients call): one path segment, not reserved, first come first served. Other extensions'
    claims are reported and ignored."""
    out: dict[str, str] = {}
    if host is None:
        return out
    for rec in host.active():
        alias = rec.manifest.get("route_alias")
        if not alias:
            continue
        name = str(alias).strip("/")
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name) or name in RESERVED_ALIASES or f"/{name}" in out.values():
            log.warning(
                "extension %s: route_alias %r refused (one lower-case path segment, not reserved, not taken)",
                rec.name,
                alias,
            )
            continue
        out[rec.name] = f"/{name}"
    return out


def mount_extension_routes(api: FastAPI, application: Application) -> int:
    """Serve every `ext.add_api_route` of the active extensions at /ext/<name><path> (and at the manifest's
    `route_alias` too). Returns how many routes (aliases not counted)."""
    host = application.extensions
    count = 0
    aliases = route_aliases(host)
    for rec in host.active():
        router = APIRouter(route_class=_route_class(host, rec))
        try:
            for path, endpoint, methods in rec.running.routes:
                router.add_api_route(path, endpoint, methods=list(methods), name=f"ext:{rec.name}:{path}")
        except Exception:  # a signature FastAPI can't serve
            host.report(rec, "add_api_route failed")
            continue
        api.include_router(router, prefix=f"/ext/{rec.name}", tags=[f"extension: {rec.name}"])
        if rec.name in aliases:
            api.include_router(router, prefix=aliases[rec.name], tags=[f"extension: {rec.name}"])
        count += len(router.routes)
    return count
