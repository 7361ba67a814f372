"""Typed options persisted to config.json (A1111's option names), and per-request overlays.

`Options` is owned by the Application. A request's `override_settings` never mutates it: generation reads through an
`OptionsView` that layers the overrides on top, so "applied for one request, then restored" holds by construction.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from webui.errors import InvalidRequest
from webui.fsutil import atomic_write_bytes, atomic_write_text
from webui.option_policy import OptionPolicy, check_option, check_unknown
from webui.options.catalog import OPTION_DEFS
from webui.options.definition import GUARD_MAX_PIXELS, OptionDef, coerce

__all__ = ["GUARD_MAX_PIXELS", "OPTION_DEFS", "OptionDef", "Options", "OptionsView", "coerce"]

log = logging.getLogger("easel.settings")
MAX_UNKNOWN_KEYS = 2000  # undeclared keys kept in config.json (A1111 has about 500 options)


class Options:
    """The persisted options, typed: every value read from config.json or sent by a user is checked against its
    declaration (`coerce`), and every change goes through `option_policy.check_option` under `policy` (what this
    server allows). Unknown keys (other tools', A1111's) are kept only as JSON-safe finite scalars.

    A corrupt config.json (bad JSON, or values of the wrong type, NaN, out of range) never stops the server: the bad
    keys start at their defaults, a warning says which, and the original file is kept as config.json.bad-<time>."""

    def __init__(self, file: Path, defs: Mapping[str, OptionDef] | None = None, policy: OptionPolicy | None = None):
        self.file = file
        self.defs: dict[str, OptionDef] = dict(defs or OPTION_DEFS)
        self.policy = policy or OptionPolicy()
        self._lock = threading.RLock()
        self._values: dict[str, Any] = self._load()

    def _typed(self, key: str, value: Any) -> Any:
        d = self.defs.get(key)
        return coerce(d, value) if d is not None else check_unknown(key, value)

    def _load(self) -> dict[str, Any]:
        try:
            raw = json.loads(self.file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            self._quarantine(f"it can't be read ({e}); every option starts at its default", {})
            return {}
        if not isinstance(raw, dict):
            self._quarantine("it is not a JSON object; every option starts at its default", {})
            return {}
        values, bad = {}, []
        for key, value in raw.items():
            try:
                values[key] = self._typed(key, value)
            except InvalidRequest as e:
                bad.append(e.message)
        if bad:
            self._quarantine("these options start at their defaults: " + "; ".join(bad), values)
        return values

    def _quarantine(self, reason: str, clean: dict[str, Any]) -> None:
        """Keep the file as it is under config.json.bad-<time>, write `clean` in its place, and say so."""
        aside = self.file.with_name(f"{self.file.name}.bad-{time.strftime('%Y%m%d-%H%M%S')}")
        n = 1
        while aside.exists():
            n += 1
            aside = aside.with_name(f"{self.file.name}.bad-{time.strftime('%Y%m%d-%H%M%S')}-{n}")
        try:
            atomic_write_bytes(aside, self.file.read_bytes())
            self._save(clean)
        except OSError as e:
            log.warning("could not set %s aside: %s", self.file, e)
        log.warning("%s is damaged: %s. The original is kept as %s.", self.file, reason, aside.name)

    def _save(self, values: dict[str, Any]) -> None:
        # allow_nan=False: a NaN can't reach the file (it would make every later read of the options fail)
        atomic_write_text(self.file, json.dumps(values, indent=2, ensure_ascii=False, allow_nan=False) + "\n")

    def add_definition(self, d: OptionDef) -> None:
        """Declare an option (extensions do at load). A stored value that doesn't fit the declaration is dropped."""
        with self._lock:
            self.defs[d.key] = d
            if d.key in self._values:
                try:
                    self._values[d.key] = coerce(d, self._values[d.key])
                except InvalidRequest as e:
                    clean = {k: v for k, v in self._values.items() if k != d.key}
                    self._quarantine(f"this option starts at its default: {e.message}", clean)
                    self._values = clean

    def get(self, key: str) -> Any:
        with self._lock:
            if key in self._values:
                return self._values[key]
            if key in self.defs:
                return self.defs[key].default
        raise KeyError(key)

    def __getattr__(self, key: str) -> Any:  # opts.sd_vae, as A1111 users write it
        if key.startswith("_") or key in ("file", "defs", "policy"):
            raise AttributeError(key)
        try:
            return self.get(key)
        except KeyError:
            raise AttributeError(key) from None

    def validate(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Every key through the one check (type, range, finite; locked or confined when exposed). All keys are
        checked before the caller changes anything, so a refused key leaves every option as it was."""
        if not isinstance(changes, Mapping):
            raise InvalidRequest("options must be a JSON object of option names and values")
        with self._lock:
            out = {
                k: check_option(
                    self.defs, self.policy, k, v, self._values.get(k, getattr(self.defs.get(k), "default", None))
                )
                for k, v in changes.items()
            }
            unknown = {k for k in [*self._values, *out] if k not in self.defs}
        if len(unknown) > MAX_UNKNOWN_KEYS:
            raise InvalidRequest(f"too many undeclared options (more than {MAX_UNKNOWN_KEYS})")
        return out

    def set(self, changes: Mapping[str, Any], *, persist: bool = True) -> None:
        clean = self.validate(changes)
        with self._lock:
            if persist:
                self._save({**self._values, **clean})  # memory changes only once the file is safely written
            self._values.update(clean)

    def all(self) -> dict[str, Any]:
        with self._lock:
            out = {k: d.default for k, d in self.defs.items()}
            out.update(self._values)
            return out

    def view(self, overrides: Mapping[str, Any] | None = None) -> "OptionsView":
        return OptionsView(self, self.validate(overrides or {}))


@dataclass
class OptionsView:
    """Read-only options for one request: its overrides over the persisted values."""

    base: Options
    overrides: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str) -> Any:
        return self.overrides[key] if key in self.overrides else self.base.get(key)

    def __getattr__(self, key: str) -> Any:
        if key in ("base", "overrides") or key.startswith("_"):
            raise AttributeError(key)
        return self.get(key)
