"""Strict JSON bodies: NaN, Infinity, -Infinity and numbers that overflow a float (1e309) are a 422 anywhere in a
request body, before any route sees it.

Python's json module (which Starlette uses) accepts these non-standard literals and turns them into floats that
pass `ge`/`le` checks unnoticed in untyped fields (`override_settings`, `script_args`, `alwayson_scripts`) and
can't be serialised back. A pure ASGI middleware: it buffers a JSON body (already bounded by the body limit), checks
it, and replays it unchanged.
"""

from __future__ import annotations

import json
import math
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from webui.api.errors import error_body


class _NonFinite:
    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text


def _parse_float(text: str) -> Any:
    value = float(text)
    return value if math.isfinite(value) else _NonFinite(text)


def find_non_finite(value: Any, path: tuple = ()) -> tuple[tuple, str] | None:
    """The location and source text of the first non-finite number in a parsed body, or None."""
    stack = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, _NonFinite):
            return where, item.text
        if isinstance(item, dict):
            stack.extend((v, (*where, k)) for k, v in reversed(list(item.items())))
        elif isinstance(item, list):
            stack.extend((v, (*where, i)) for i, v in reversed(list(enumerate(item))))
    return None


def non_finite_in(body: bytes) -> tuple[tuple, str] | None:
    """Parse `body` as JSON; None when it holds only finite numbers or isn't JSON at all (the route reports that)."""
    try:
        parsed = json.loads(body, parse_constant=_NonFinite, parse_float=_parse_float)
    except (ValueError, RecursionError):
        return None
    return find_non_finite(parsed)


def _is_json(scope: Scope) -> bool:
    """A JSON media type, or none at all (FastAPI may parse a body without Content-Type as JSON)."""
    for key, value in scope.get("headers") or ():
        if key == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))
    return True


class StrictJSONMiddleware:
    """422 for a JSON request body holding NaN/±Infinity or an overflowing number; other requests pass untouched."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS") or not _is_json(scope):
            return await self.app(scope, receive, send)
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: nothing to check
                return await self.app(scope, _replay([], message, receive), send)
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        found = non_finite_in(body)
        if found is not None:
            where, text = found
            loc = ["body", *where]
            field = ".".join(str(p) for p in where) or "body"
            detail = (
                f"invalid field {field}: {text} is not a finite number (NaN, Infinity and numbers beyond "
                f"±1.8e308 are refused)"
            )
            errors = [{"type": "finite_number", "loc": loc, "msg": "Input should be a finite number", "input": text}]
            payload = json.dumps(error_body("RequestValidationError", detail, errors=errors)).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 422,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(payload)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": payload})
            return
        await self.app(scope, _replay([body], None, receive), send)


def _replay(bodies: list[bytes], pending: Message | None, receive: Receive) -> Receive:
    queue: list[Message] = [{"type": "http.request", "body": b, "more_body": False} for b in bodies]
    if pending is not None:
        queue.append(pending)

    async def replay() -> Message:
        if queue:
            return queue.pop(0)
        return await receive()

    return replay
