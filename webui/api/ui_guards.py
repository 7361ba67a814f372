"""Guards for the Gradio UI's own endpoints: the login form's back-off, the /login page, and the upload check.

Pure ASGI like webui/api/middleware.py (whose helpers they share); installed by install_security only when the UI
is mounted.
"""

from __future__ import annotations

import json
from typing import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from webui.api.errors import error_body
from webui.api.middleware import refuse, send_json
from webui.api.throttle import AuthThrottle, client_address


class LoginThrottleMiddleware:
    """The per-address back-off for the Gradio login form (POST /login): a locked-out address gets 429 before
    Gradio checks the password; Gradio's answer (2xx or not) counts as a success or a failure."""

    def __init__(self, app: ASGIApp, throttle: AuthThrottle, paths: tuple[str, ...] = ("/login", "/login/")):
        self.app = app
        self.throttle = throttle
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("path") not in self.paths:
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

        async def observing_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                if 200 <= message["status"] < 400:
                    self.throttle.succeeded(client)
                else:
                    self.throttle.failed(client, "UI login")
            await send(message)

        await self.app(scope, receive, observing_send)


class LoginPageMiddleware:
    """With --gradio-auth, the page at / without a login answers 302 → /login, and /login shows Gradio's login
    form (Gradio itself would show the form at / with a 200, which a client cannot tell from an open UI). With a
    valid login cookie /login goes back to /, where Gradio reloads after a successful login."""

    def __init__(self, app: ASGIApp, has_session: Callable[[Scope], bool]):
        self.app = app
        self.has_session = has_session

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") in ("GET", "HEAD") and scope.get("path") in ("/", "/login"):
            logged_in = self.has_session(scope)
            query = scope.get("query_string") or b""
            tail = ("?" + query.decode("latin-1")) if query else ""  # ?__theme=dark survives the round trip
            if scope["path"] == "/" and not logged_in:
                return await _redirect(send, "/login" + tail)
            if scope["path"] == "/login":
                if logged_in:
                    return await _redirect(send, "/" + tail)
                scope = {**scope, "path": "/", "raw_path": b"/"}  # Gradio's page, in its logged-out form
        await self.app(scope, receive, send)


async def _redirect(send: Send, location: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 302,
            "headers": [(b"location", location.encode()), (b"content-length", b"0"), (b"cache-control", b"no-store")],
        }
    )
    await send({"type": "http.response.body", "body": b""})


class UploadFormatMiddleware:
    """Files uploaded to the Gradio UI (POST /gradio_api/upload) that Pillow recognises as an image in a format other
    than PNG, JPEG, WEBP, BMP, GIF or TIFF are deleted and the upload answered 415: Gradio's image components would
    otherwise decode them with every Pillow plugin (EPS runs Ghostscript where it is installed). Files that are not
    images at all (captions, prompt lists) pass. The API's image fields have their own check (open_user_image)."""

    def __init__(self, app: ASGIApp, paths: tuple[str, ...] = ("/gradio_api/upload", "/upload")):
        self.app = app
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("path") not in self.paths:
            return await self.app(scope, receive, send)
        start: Message | None = None
        chunks: list[bytes] = []

        async def holding_send(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    await self._finish(start, b"".join(chunks), send)

        await self.app(scope, receive, holding_send)

    async def _finish(self, start: Message | None, body: bytes, send: Send) -> None:
        import asyncio

        refused = None
        if start is not None and start["status"] == 200:
            try:
                paths = json.loads(body)
            except ValueError:
                paths = []
            refused = await asyncio.to_thread(_refuse_foreign_images, paths if isinstance(paths, list) else [])
        if refused:
            return await send_json(send, 415, error_body("UnsupportedMediaType", refused))
        assert start is not None  # a response body comes after its start
        await send(start)
        await send({"type": "http.response.body", "body": body})


def _refuse_foreign_images(paths: list) -> str | None:
    """Delete every upload if one of them is an image in a format Easel doesn't accept; say which."""
    from pathlib import Path

    from PIL import Image, UnidentifiedImageError

    from webui.outputs import USER_IMAGE_FORMATS

    bad = None
    for p in paths:
        if not isinstance(p, str):
            continue
        try:
            with Image.open(p) as im:  # identifies only: no plugin decodes (or calls Ghostscript) before load()
                fmt = im.format
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
            continue
        if fmt not in USER_IMAGE_FORMATS:
            bad = fmt
            break
    if bad is None:
        return None
    for p in paths:
        if isinstance(p, str):
            Path(p).unlink(missing_ok=True)
    return f"images in {bad} format are not accepted; use PNG, JPEG, WEBP, BMP, GIF or TIFF"
