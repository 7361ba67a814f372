"""Messages the UI shows: an exception as one paragraph for the user, and the error/ok HTML boxes. Its own module so
that common.py and prompt_tools.py (which common.py imports) share one version."""

from __future__ import annotations

import html

from pydantic import ValidationError

from webui.errors import EaselError


def error_message(exc: BaseException) -> str:
    """A one-paragraph message for the user: typed errors say what they mean, validation names the field."""
    if isinstance(exc, ValidationError):
        parts = []
        for err in exc.errors():
            where = ".".join(str(x) for x in err.get("loc", ())) or "request"
            parts.append(f"{where}: {err.get('msg', 'invalid value')}")
        return "Invalid request: " + "; ".join(parts)
    if isinstance(exc, EaselError):
        return exc.message
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def error_html(message: str) -> str:
    return f'<div class="easel-error">{html.escape(message)}</div>'


def notice_html(message: str) -> str:
    """A plain notice (what the user asked for happened, e.g. "Interrupted"): not styled as an error."""
    return f'<div class="easel-notice">{html.escape(message)}</div>'


def ok_html(message: str) -> str:
    return f'<div class="easel-ok">{html.escape(message)}</div>'
