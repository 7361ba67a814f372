"""What an option is (`OptionDef`) and the check of one value against its declaration (`coerce`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from webui.errors import InvalidRequest
from webui.option_policy import JSON_SAFE_INT, MAX_LIST, MAX_TEXT


@dataclass(frozen=True)
class OptionDef:
    key: str
    default: Any
    label: str
    section: str
    kind: type = str
    choices: Callable[[], list[str]] | tuple | None = None
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    path: bool = False  # names a folder/file on the server: read-only when exposed (see option_policy)
    reload_ui: bool = False  # shown in the page's layout: takes effect after Settings → "Reload UI"


GUARD_MAX_PIXELS = 8192 * 8192  # the most any pixel limit may be raised to (a 67-megapixel image)


def coerce(d: OptionDef, value: Any) -> Any:
    """Validate one option value against its declared type; a wrong type, a non-finite number or a value out of range
    is an InvalidRequest naming the option. Every int and text is bounded even when the option declares no range."""
    try:
        if d.kind is bool:
            if isinstance(value, str) and value.lower() in ("true", "false"):
                value = value.lower() == "true"
            if not isinstance(value, bool):
                raise TypeError
        elif d.kind is int:
            if isinstance(value, bool) or isinstance(value, (list, dict)) or value is None:
                raise TypeError
            if isinstance(value, str):
                value = int(value) if value.strip().lstrip("+-").isdigit() else float(value)
            if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
                raise TypeError
            value = int(value)
        elif d.kind is list:
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise TypeError
            if len(value) > MAX_LIST or any(len(v) > MAX_TEXT or "\x00" in v for v in value):
                raise InvalidRequest(f"option {d.key}: at most {MAX_LIST} items of {MAX_TEXT} characters")
            value = list(value)
        elif d.kind is float:
            if isinstance(value, bool) or isinstance(value, (list, dict)) or value is None:
                raise TypeError
            value = float(value)
            if not math.isfinite(value):
                raise InvalidRequest(f"option {d.key}: {value!r} is not a finite number")
        elif not isinstance(value, str):
            raise TypeError
        elif len(value) > MAX_TEXT or "\x00" in value:
            raise InvalidRequest(f"option {d.key}: text longer than {MAX_TEXT} characters or with a NUL character")
    except (TypeError, ValueError, OverflowError):
        raise InvalidRequest(f"option {d.key}: expected {d.kind.__name__}, got {_short(value)}") from None
    if d.minimum is not None and value < d.minimum:
        raise InvalidRequest(f"option {d.key}: {_short(value)} is too small (minimum {d.minimum})")
    if d.maximum is not None and value > d.maximum:
        raise InvalidRequest(f"option {d.key}: {_short(value)} is too large (maximum {d.maximum})")
    if d.kind is int and abs(value) > JSON_SAFE_INT:
        raise InvalidRequest(f"option {d.key}: {_short(value)} is out of range")
    if isinstance(d.choices, tuple) and value not in d.choices:
        raise InvalidRequest(f"option {d.key}: {value!r} is not one of {list(d.choices)}")
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
