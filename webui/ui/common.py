"""Small helpers shared by the tabs: turning errors into visible messages, and infotext into HTML."""

from __future__ import annotations

import html
from typing import Any

from pydantic import ValidationError

from webui.errors import EaselError

CSS = """
<style>
.easel-error { color: #b91c1c; background: #fef2f2; border: 1px solid #fca5a5; border-radius: 6px;
               padding: 6px 10px; margin: 4px 0; white-space: pre-wrap; }
.easel-ok { color: #166534; padding: 4px 0; }
.easel-note { background: #fffbeb; border: 1px solid #fcd34d; border-radius: 6px; padding: 6px 10px; }
.easel-infotext { font-size: 0.9em; white-space: pre-wrap; word-break: break-word; }
.easel-progress { font-family: monospace; min-height: 1.4em; }
#easel_footer { text-align: center; opacity: 0.7; font-size: 0.85em; }
#txt2img_seed_row button, #quicksettings button { max-width: 3em; min-width: 2.5em; }
</style>
"""


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


def ok_html(message: str) -> str:
    return f'<div class="easel-ok">{html.escape(message)}</div>'


def infotext_html(text: str | None) -> str:
    """An infotext shown under a gallery, as A1111 does: prompt lines, then the parameters line."""
    if not text:
        return ""
    return f'<div class="easel-infotext">{html.escape(text)}</div>'


def as_int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default
