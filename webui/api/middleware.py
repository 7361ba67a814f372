"""Pure ASGI middleware (no BaseHTTPMiddleware: no extra task or body buffering per request).

From the outside in: protective headers on every response, the Host check (DNS rebinding), the cross-site check on
state-changing requests (CSRF), CORS (Starlette's, only with --cors-allow-origins), HTTP Basic on API routes, and the
request body limit. The UI's own guards (login back-off, /login page, upload check) are in ui_guards.py.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Callable, Iterable

from urllib.parse import urlsplit

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from webui.api.errors import error_body
from webui.api.throttle import AuthThrottle, client_address
from webui.security import check_basic_auth, is_allowed_host

PROTECTIVE_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"SAMEORIGIN"),
    (b"referrer-policy", b"same-origin"),
)
FRAME_ANCESTORS = b"frame-ancestors 'self'"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key == name:
            return value.decode("latin-1")
    return None


async def send_json(send: Send, status: int, body: dict, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


async def refuse(
    scope: Scope, send: Send, status: int, error: str, detail: str, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})
    else:
        await send_json(send, status, error_body(error, detail), headers)


class SecurityHeadersMiddleware:
    """X-Content-Type-Options, X-Frame-Options, Referrer-Policy and CSP frame-ancestors on every response."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in PROTECTIVE_HEADERS if k not in present]
                for i, (k, v) in enumerate(headers):
                    if k.lower() == b"content-security-policy":
                        if b"frame-ancestors" not in v:
                            headers[i] = (k, v.rstrip(b"; ") + b"; " + FRAME_ANCESTORS)
                        break
                else:
                    headers.append((b"content-security-policy", FRAME_ANCESTORS))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _in_process(scope: Scope) -> bool:
    """A request that came through no socket (an in-process ASGI test client): it cannot be a rebinding browser."""
    client = scope.get("client")
    if not client:
        return True
    try:
        ipaddress.ip_address(str(client[0]))
        return False
    except ValueError:
        return True


class HostCheckMiddleware:
    """Answer only requests whose Host is a loopback name (any port) or one of `extra_hosts` (--allowed-hosts, the
    share host): a page on another site that rebinds its DNS name to this machine still sends its own name as Host,
    and is refused here with a 400 before any password is asked for."""

    def __init__(self, app: ASGIApp, extra_hosts: Callable[[], Iterable[str]] = lambda: (), ip_literals: bool = False):
        self.app = app
        self.extra_hosts = extra_hosts
        self.ip_literals = ip_literals

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not _in_process(scope):
            if not is_allowed_host(_header(scope, b"host"), self.extra_hosts(), ip_literals=self.ip_literals):
                return await refuse(
                    scope,
                    send,
                    400,
                    "InvalidHost",
                    "Host header not allowed: this server answers only to localhost/127.0.0.1/[::1],"
                    " its own addresses and names, and the names given with --allowed-hosts",
                )
        await self.app(scope, receive, send)


class BasicAuthMiddleware:
    """HTTP Basic on every path under `prefixes`. `session_ok(scope)` may accept a request some other way (the
    Gradio UI's login cookie on /gradio_api when --gradio-auth is on)."""

    def __init__(
        self,
        app: ASGIApp,
        credentials: list[tuple[str, str]],
        prefixes: tuple[str, ...],
        session_ok: Callable[[Scope], bool] | None = None,
        throttle: AuthThrottle | None = None,
    ):
        self.app = app
        self.credentials = credentials
        self.prefixes = prefixes
        self.session_ok = session_ok
        self.throttle = throttle or AuthThrottle()

    def protects(self, path: str) -> bool:
        return any(path == p.rstrip("/") or path.startswith(p) for p in self.prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and self.credentials and self.protects(scope.get("path", "")):
            if self.session_ok and self.session_ok(scope):
                return await self.app(scope, receive, send)
            client = client_address(scope)
            wait = self.throttle.retry_after(client)
            if wait > 0:
                return await refuse(
                    scope,
                    send,
                    429,
                    "TooManyRequests",
                    f"too many failed logins from this address; try again in {wait:.0f} s",
                    [(b"retry-after", str(int(wait) + 1).encode())],
                )
            header = _header(scope, b"authorization")
            user = check_basic_auth(header, self.credentials)
            if user is not None:
                self.throttle.succeeded(client)
            elif header:  # a request without credentials is no guess (browsers ask first); a wrong one is
                self.throttle.failed(client, "API HTTP Basic")
            if user is None:
                return await refuse(
                    scope,
                    send,
                    401,
                    "Unauthorized",
                    "Not authenticated: this API needs HTTP Basic credentials (--api-auth)",
                    [(b"www-authenticate", b'Basic realm="Easel API", charset="UTF-8"')],
                )
            scope = {**scope, "user_name": user}
        await self.app(scope, receive, send)


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"request body is larger than the limit of {limit} bytes (--max-body-size)")


class BodyLimitMiddleware:
    """413 for a body over `max_bytes`: at once from Content-Length, else while the body streams in."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = _header(scope, b"content-length")
        if length is not None:
            try:
                too_big = int(length) > self.max_bytes
            except ValueError:
                return await send_json(send, 400, error_body("BadRequest", "invalid Content-Length"))
            if too_big:
                return await send_json(
                    send,
                    413,
                    error_body("PayloadTooLarge", BodyTooLarge(self.max_bytes).detail),
                    [(b"connection", b"close")],
                )
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge as e:
            if started:
                raise
            await send_json(send, 413, error_body("PayloadTooLarge", e.detail), [(b"connection", b"close")])


SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def _split_host(netloc: str) -> tuple[str, int | None]:
    """ "Example.com:7860" → ("example.com", 7860); no port → None."""
    try:
        parts = urlsplit("//" + netloc.strip().lower())
        return (parts.hostname or "").rstrip("."), parts.port
    except ValueError:
        return "", -1


def _same_site_as_host(origin: str, host_header: str) -> bool:
    """Whether `origin` (scheme://host[:port]) names this server, as reached through `host_header`. A Host without
    a port (a TLS proxy in front) matches the origin's default port, 80 or 443."""
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    o_host, o_port = _split_host(parts.netloc)
    h_host, h_port = _split_host(host_header)
    if not o_host or o_host != h_host or -1 in (o_port, h_port):
        return False
    o_port = o_port or (443 if parts.scheme == "https" else 80)
    return o_port in (80, 443) if h_port is None else o_port == h_port


def is_cross_site(scope: Scope, allowed_origins: Iterable[str] = ()) -> bool:
    """True when a browser says this request comes from another site: an Origin that is neither this server's own
    (compared by host and port with the Host header) nor an --cors-allow-origins one, an opaque "null" Origin, or,
    with no Origin, Fetch Metadata `Sec-Fetch-Site: cross-site|same-site` (another port on localhost is same-site)."""
    origin = _header(scope, b"origin")
    if origin is not None:
        origin = origin.strip().rstrip("/")
        if origin in {o.rstrip("/") for o in allowed_origins}:
            return False
        return not _same_site_as_host(origin, _header(scope, b"host") or "")
    site = (_header(scope, b"sec-fetch-site") or "").strip().lower()
    return site in ("cross-site", "same-site")


class CrossSiteMiddleware:
    """403 for a state-changing request (any method but GET/HEAD/OPTIONS, and every WebSocket) that a browser
    marks as cross-site, unless its Origin is allowed by --cors-allow-origins. Body-less POSTs (interrupt,
    unload, extension toggles) need no preflight, so CORS alone would let any web page fire them."""

    def __init__(self, app: ASGIApp, allowed_origins: Iterable[str] = ()):
        self.app = app
        self.allowed_origins = tuple(allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state_changing = scope["type"] == "websocket" or (
            scope["type"] == "http" and scope.get("method", "GET").upper() not in SAFE_METHODS
        )
        if state_changing and is_cross_site(scope, self.allowed_origins):
            return await refuse(
                scope,
                send,
                403,
                "CrossSiteRequest",
                "cross-site request refused: this server "
                "accepts state-changing requests only from its own pages (or --cors-allow-origins)",
            )
        await self.app(scope, receive, send)
