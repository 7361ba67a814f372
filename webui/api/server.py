"""Build the one FastAPI server: API routers, error mapping, the Gradio UI mounted at /, and the network guards
(protective headers, Host check, CORS, HTTP Basic on API routes, body limit)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Callable

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Mount
from starlette.types import Scope

from webui import VERSION
from webui.api.easel_jobs import build_easel_jobs_router
from webui.api.errors import install_error_handlers
from webui.api.extensions import build_extensions_router, mount_extension_routes, route_aliases
from webui.api.merge import build_merge_router
from webui.api.models_install import build_models_install_router
from webui.api.middleware import (
    BasicAuthMiddleware,
    BodyLimitMiddleware,
    CrossSiteMiddleware,
    HostCheckMiddleware,
    SecurityHeadersMiddleware,
)
from webui.api.prompts import build_prompts_router
from webui.api.sdapi import build_sdapi_router
from webui.api.strict_json import StrictJSONMiddleware
from webui.api.system import build_system_router
from webui.api.token_count import build_token_count_router
from webui.api.throttle import AuthThrottle
from webui.api.training import build_training_router
from webui.api.workers import build_workers_router
from webui.api.ui_guards import LoginPageMiddleware, LoginThrottleMiddleware, UploadFormatMiddleware
from webui.flags import allowed_hosts, api_credentials, api_enabled, bind_host, cors_origins, gradio_credentials
from webui.security import is_loopback_bind, machine_host_names, start_share_when_ready

if TYPE_CHECKING:
    from webui.app import Application

# Every API surface --api-auth protects (the Gradio UI page itself is --gradio-auth's job)
API_PREFIXES = ("/sdapi/", "/easel/", "/ext/", "/docs", "/openapi.json", "/redoc", "/gradio_api/")


def _has_gradio_session(api: FastAPI, scope: Scope) -> bool:
    """True when a request carries a valid Gradio login cookie (only meaningful with --gradio-auth)."""
    gradio_app: Any = next((m.app for m in api.routes if isinstance(m, Mount) and hasattr(m.app, "tokens")), None)
    if gradio_app is None or not getattr(gradio_app, "auth", None):
        return False
    cookies = {}
    for key, value in scope.get("headers") or ():
        if key == b"cookie":
            for part in value.decode("latin-1").split(";"):
                name, _, val = part.strip().partition("=")
                cookies[name] = val
    cid = gradio_app.cookie_id
    token = cookies.get(f"access-token-{cid}") or cookies.get(f"access-token-unsecure-{cid}")
    return bool(token) and token in gradio_app.tokens


def _gradio_session_check(api: FastAPI) -> Callable[[Scope], bool]:
    """The UI's own calls to /gradio_api pass --api-auth with the Gradio login cookie (no second prompt)."""
    return lambda scope: scope.get("path", "").startswith("/gradio_api/") and _has_gradio_session(api, scope)


def mount_ui(api: FastAPI, application: Application, blocks: Any | None = None) -> Any:
    """Mount the Gradio Blocks at / with --gradio-auth credentials; return the Blocks."""
    import gradio as gr

    if blocks is None:
        from webui.ui import build_ui

        blocks = build_ui(application)
    from webui.ui.page_css import PAGE_CSS

    creds = gradio_credentials(application.ns)
    # css: Gradio 6 takes the page's CSS here (Blocks(css=…) is deprecated, and mount_gradio_app replaces it)
    # app_kwargs: Gradio's own FastAPI would publish an /openapi.json of its routes; Easel's API has its own
    gr.mount_gradio_app(
        api,
        blocks,
        path="/",
        auth=creds or None,
        app_kwargs={"openapi_url": None},
        css=PAGE_CSS,
        auth_message="Easel: log in with a --gradio-auth user" if creds else None,
    )
    return blocks


def install_security(api: FastAPI, application: Application) -> None:
    """Add the guards. Starlette runs the last added outermost:
    headers → Host → cross-site → CORS → login back-off → API auth → body limit."""
    ns = application.ns
    api.add_middleware(StrictJSONMiddleware)  # innermost: NaN/Infinity in a (size-checked, authenticated) body: 422
    api.add_middleware(BodyLimitMiddleware, max_bytes=int(ns.max_body_size) * 1024 * 1024)
    throttle = AuthThrottle()  # one per server: API Basic auth and the UI login count failures together
    api.state.auth_throttle = throttle
    creds = api_credentials(ns)
    if creds:
        # extensions' route aliases (e.g. /controlnet/) are API routes too: behind the same auth
        aliases = tuple(f"{a}/" for a in route_aliases(application.extensions).values())
        api.add_middleware(
            BasicAuthMiddleware,
            credentials=creds,
            prefixes=API_PREFIXES + aliases,
            session_ok=_gradio_session_check(api) if not ns.nowebui else None,
            throttle=throttle,
        )
    if not ns.nowebui:
        api.add_middleware(UploadFormatMiddleware)
        api.add_middleware(LoginThrottleMiddleware, throttle=throttle)
        if gradio_credentials(ns):
            api.add_middleware(LoginPageMiddleware, has_session=lambda scope: _has_gradio_session(api, scope))
    origins = cors_origins(ns)
    if origins:
        api.add_middleware(
            CORSMiddleware, allow_origins=origins, allow_credentials=True, allow_methods=["*"], allow_headers=["*"]
        )
    api.add_middleware(CrossSiteMiddleware, allowed_origins=origins)
    api.add_middleware(HostCheckMiddleware, **host_rule(application))
    api.add_middleware(SecurityHeadersMiddleware)


def host_rule(application: Application) -> dict:
    """Which Host names the server answers to (DNS rebinding): loopback names always, the share host, and
    - bound to loopback: the --allowed-hosts names (a reverse proxy's name);
    - exposed: any IP address (a browser that typed an address has no DNS name to rebind), and the --allowed-hosts
      names, or without that flag this machine's own names.
    Another domain name gets 400, so a rebinding page's own name is refused before any password prompt."""
    ns = application.ns
    hosts = allowed_hosts(ns)
    exposed = not is_loopback_bind(bind_host(ns))
    own = machine_host_names() if exposed and not hosts else ()
    return {"extra_hosts": lambda: (*hosts, *own, *_share_hosts(application)), "ip_literals": exposed}


def _share_hosts(application: Application) -> tuple[str, ...]:
    url = application.share_url
    if not url:
        return ()
    return (url.split("://", 1)[-1].split("/", 1)[0],)


def _open_share_on_startup(api: FastAPI, application: Application, blocks) -> None:
    """--share: open Gradio's tunnel once the server listens (mount_gradio_app never does it by itself)."""
    ns = application.ns
    previous = api.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app):
        async with previous(app) as state:
            start_share_when_ready(application, blocks, host=bind_host(ns), port=ns.port)
            yield state

    api.router.lifespan_context = lifespan


def build_fastapi(application: Application, *, blocks: Any | None = None) -> FastAPI:
    """The server. `blocks` replaces the UI (tests mount a small Blocks); it is ignored with --nowebui.

    As in A1111, the HTTP API (/sdapi, /easel, /ext, extension aliases, /docs, /openapi.json) exists only with --api
    (or --nowebui): a UI-only server has no API route at all, so nothing but the Gradio login guards it."""
    with_api = api_enabled(application.ns)
    docs: dict[str, Any] = {} if with_api else {"docs_url": None, "redoc_url": None, "openapi_url": None}
    api = FastAPI(
        title="Easel",
        version=VERSION,
        description="A1111-compatible Stable Diffusion API, plus Easel's "
        "async jobs API. With --api-auth every route here needs HTTP Basic credentials.",
        **docs,
    )
    install_error_handlers(api)
    if with_api:
        include_api_routes(api, application)
    else:
        _answer_api_off(api)
    api.state.application = application
    api.state.blocks = None
    if not application.ns.nowebui:
        api.state.blocks = mount_ui(api, application, blocks)
        if blocks is None:  # Settings → "Reload UI" rebuilds this page (webui/api/ui_reload.py)
            from webui.api.ui_reload import UiReloader

            application.ui_reloader = UiReloader(api, application)
        if application.ns.share:
            _open_share_on_startup(api, application, api.state.blocks)
    install_security(api, application)
    return api


def _answer_api_off(api: FastAPI) -> None:
    """Without --api, API paths get a plain JSON 404 that says how to turn the API on (not the UI's page)."""
    from fastapi.responses import JSONResponse

    from webui.api.errors import error_body

    async def api_off() -> JSONResponse:
        return JSONResponse(error_body("NotFound", "the HTTP API is off: start Easel with --api"), status_code=404)

    for prefix in ("/sdapi", "/easel", "/ext"):
        api.add_api_route(
            prefix + "/{rest:path}", api_off, methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False
        )


def include_api_routes(api: FastAPI, application: Application) -> None:
    # first-registered routes answer: the specialised routers come before build_sdapi_router's fallbacks
    api.include_router(build_extensions_router(application))  # /sdapi/v1/extensions, scripts, script-info
    api.include_router(build_prompts_router(application))  # /sdapi/v1/embeddings, prompt-styles
    api.include_router(build_token_count_router(application))  # /easel/v1/prompt/token-count (CLIP and T5)
    api.include_router(build_sdapi_router(application))
    api.include_router(build_easel_jobs_router(application))
    api.include_router(build_training_router(application))  # /easel/v1/train/lora
    api.include_router(build_merge_router(application))  # /easel/v1/merge
    api.include_router(build_models_install_router(application))  # /easel/v1/models/install
    api.include_router(build_system_router(application))  # /easel/v1/system
    api.include_router(build_workers_router(application))  # /easel/v1/workers (Ray workers, #22)
    mount_extension_routes(api, application)  # /ext/<name>/..., before the UI's catch-all mount at "/"
