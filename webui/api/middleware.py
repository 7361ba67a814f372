"""Pure ASGI middleware (no BaseHTTPMiddleware: no extra task or body buffering per request).

From the outside in: protective headers on every response, the Host check (DNS rebinding), CORS (Starlette's, only
with --cors-allow-origins), HTTP Basic on API routes, and the request body limit.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Callable, Iterable

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from webui.api.errors import error_body
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
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": payload})


async def refuse(scope: Scope, send: Send, status: int, error: str, detail: str,
                 headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
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
    """When bound to loopback, answer only requests whose Host is a loopback name (any port): a page on another
    site that rebinds its DNS name to 127.0.0.1 still sends its own name as Host, and is refused here."""

    def __init__(self, app: ASGIApp, extra_hosts: Callable[[], Iterable[str]] = lambda: ()):
        self.app = app
        self.extra_hosts = extra_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not _in_process(scope):
            if not is_allowed_host(_header(scope, b"host"), self.extra_hosts()):
                return await refuse(scope, send, 400, "InvalidHost",
                                    "Host header not allowed: this server only answers to localhost/127.0.0.1/[::1]")
        await self.app(scope, receive, send)


class BasicAuthMiddleware:
    """HTTP Basic on every path under `prefixes`. `session_ok(scope)` may accept a request some other way (the
    Gradio UI's login cookie on /gradio_api when --gradio-auth is on)."""

    def __init__(self, app: ASGIApp, credentials: list[tuple[str, str]], prefixes: tuple[str, ...],
                 session_ok: Callable[[Scope], bool] | None = None):
        self.app = app
        self.credentials = credentials
        self.prefixes = prefixes
        self.session_ok = session_ok

    def protects(self, path: str) -> bool:
        return any(path == p.rstrip("/") or path.startswith(p) for p in self.prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and self.credentials and self.protects(scope.get("path", "")):
            user = check_basic_auth(_header(scope, b"authorization"), self.credentials)
            if user is None and not (self.session_ok and self.session_ok(scope)):
                return await refuse(scope, send, 401, "Unauthorized", "Not authenticated: this API needs HTTP Basic "
                                    "credentials (--api-auth)",
                                    [(b"www-authenticate", b'Basic realm="Easel API", charset="UTF-8"')])
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
                return await send_json(send, 413, error_body("PayloadTooLarge", BodyTooLarge(self.max_bytes).detail),
                                       [(b"connection", b"close")])
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
