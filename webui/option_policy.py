"""The one check every option change goes through (POST /sdapi/v1/options, Settings → Apply, `override_settings` of
txt2img/img2img/jobs, infotext-driven overrides, script cells): `check_option` decides per key whether the value is
allowed (returned, typed), locked while the server is exposed (Forbidden, 403) or invalid (InvalidRequest, 422).

`Options.validate` calls it for every key, so no path that changes or overlays options can skip it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from webui.errors import Forbidden, InvalidRequest
from webui.pathguard import PathOutside, confine

MAX_TEXT = 4096  # longest string option value
MAX_LIST = 256  # most items in a list option
JSON_SAFE_INT = 2**53  # ints beyond this lose precision in JavaScript clients (and can't be a seed, a size, …)

# Options that name a folder or file on the server. Easel's own are marked `path=True` in their OptionDef; an
# extension's (A1111 or Easel style) are recognised by A1111's naming habits, e.g. control_net_models_path.
_PATH_KEY = re.compile(r"(^outdir_|_path$|_paths$|_dir$|_dirs$|_folder$)")


def is_path_option(key: str, d: Any = None) -> bool:
    return bool(getattr(d, "path", False)) or bool(_PATH_KEY.search(key))


@dataclass(frozen=True)
class OptionPolicy:
    """What the current server allows. The default (loopback) allows every well-typed value, as A1111 does."""

    exposed: bool = False
    extensions_locked: bool = False
    allow_path_options: bool = False
    roots: tuple[Path, ...] = field(default_factory=tuple)  # where path options may point when exposed

    def lock_reason(self, key: str, d: Any) -> str | None:
        if key == "disabled_extensions" and self.extensions_locked:
            return (
                "enabling or disabling extensions is locked while the server is reachable from the network "
                "(--enable-insecure-extension-access unlocks it)"
            )
        if key == "extensions_index_url" and self.extensions_locked:
            return (
                "the extension index URL is read-only while the server is reachable from the network: the "
                "server fetches it (--enable-insecure-extension-access unlocks it with the other extension "
                "controls; the fetch stays limited to public http(s) addresses)"
            )
        if self.exposed and is_path_option(key, d) and not self.allow_path_options:
            return (
                f"option {key} names a server path: it is read-only while the server is reachable from the "
                "network (the admin can pass --allow-path-options to allow paths inside the data dir)"
            )
        return None


def check_unknown(key: str, value: Any) -> Any:
    """A key no one declared. A1111 clients send A1111's own option names (hundreds Easel has no use for, e.g. a
    full options dict read from an A1111 server), and refusing them would break those clients; so such a key is
    stored, but only as a JSON-safe finite scalar (or a list of strings), which can't break a later read or save.
    If an extension declares the key later, the stored value is checked against its type then."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) > JSON_SAFE_INT:
            raise InvalidRequest(f"option {key}: {value} is out of range")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidRequest(f"option {key}: {value!r} is not a finite number")
        return value
    if isinstance(value, str):
        return _text(key, value)
    if isinstance(value, (list, tuple)) and len(value) <= MAX_LIST and all(isinstance(v, str) for v in value):
        return [_text(key, v) for v in value]
    raise InvalidRequest(
        f"option {key}: unknown options take a number, text, true/false or a list of text, not {type(value).__name__}"
    )


def _text(key: str, value: str) -> str:
    if len(value) > MAX_TEXT or "\x00" in value:
        raise InvalidRequest(f"option {key}: text longer than {MAX_TEXT} characters or with a NUL character")
    return value


def check_option(defs: dict[str, Any], policy: OptionPolicy, key: str, value: Any, current: Any = None) -> Any:
    """The typed value of one change, or Forbidden (locked here) or InvalidRequest (wrong type, range, non-finite).

    A locked key sent with its current value passes (nothing changes): clients that read all options and post them
    back with one edit keep working on an exposed server."""
    from webui.options.definition import coerce

    if not isinstance(key, str) or not key.strip() or len(key) > 200:
        raise InvalidRequest(f"option name {str(key)[:40]!r} is not valid")
    d = defs.get(key)
    reason = policy.lock_reason(key, d)
    try:
        clean = coerce(d, value) if d is not None else check_unknown(key, value)
    except InvalidRequest:
        if reason:
            raise Forbidden(reason) from None  # a locked key is refused the same way whatever the value
        raise
    if reason and clean != current:
        raise Forbidden(reason)
    if policy.exposed and is_path_option(key, d) and clean != current:
        for text in clean if isinstance(clean, list) else [clean]:
            if isinstance(text, str) and text.strip():
                try:
                    confine(text, policy.roots, what=f"option {key}")
                except PathOutside as e:
                    raise Forbidden(e.message) from None
    return clean
