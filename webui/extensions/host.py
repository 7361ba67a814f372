"""The extension host: discovers extension folders, checks their manifest and contract version, runs their
`setup(ext)`, and dispatches events. A failing extension is reported and disabled for the session; the app and the
generation that called it keep going.

Each extension folder is imported as a package (`extension_package`): `scripts/x.py` is `<package>.scripts.x`, so a
script imports its helpers relatively (`from ..lib import units`) and the import system loads each module once."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import re
import sys
import tomllib
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from webui import VERSION
from webui.errors import EaselError, InvalidRequest
from webui.extensions.api import API_VERSION, EVENTS, ExtensionHandle, ExtensionSettings, Script, ScriptError
from webui.settings import OptionDef

log = logging.getLogger("easel.extensions")


@dataclass
class ExtensionRecord:
    name: str
    path: Path
    builtin: bool
    manifest: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True
    error: str | None = None  # why it isn't running (manifest, setup or a hook raised)
    handle: ExtensionHandle | None = None

    @property
    def version(self) -> str:
        return str(self.manifest.get("version", ""))

    @property
    def active(self) -> bool:
        return self.enabled and self.error is None and self.handle is not None

    @property
    def running(self) -> ExtensionHandle:
        """The handle of an active record (ExtensionHost.active() lists only those)."""
        assert self.handle is not None
        return self.handle


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split(".") if p.isdigit())


def extension_package(name: str, folder: Path) -> str:
    """Make `folder` importable as the package `easel_ext_<name>` and return that name. Its subfolders are
    namespace packages (no __init__.py needed). Loading again, the scripts run anew (a new Application runs each
    script's `setup` on fresh modules, as before) while helper modules stay loaded once per process; a package of
    that name from another folder is replaced with everything under it.

    Hand-written rather than `spec_from_file_location` per file: that API imports one file, not a folder, and
    the extensions' own helper loaders built on it are what loaded ControlNet's lib/ twice."""
    package = "easel_ext_" + re.sub(r"\W", "_", name)
    path = str(folder.resolve())
    current = sys.modules.get(package)
    same = current is not None and list(getattr(current, "__path__", ())) == [path]
    stale = f"{package}.scripts" if same else package
    for key in [k for k in sys.modules if k == stale or k.startswith(stale + ".")]:
        del sys.modules[key]
    if not same:
        spec = importlib.util.spec_from_loader(package, None, is_package=True)
        assert spec is not None
        spec.submodule_search_locations = [path]
        sys.modules[package] = importlib.util.module_from_spec(spec)
    importlib.invalidate_caches()  # a folder installed since the last import is seen
    return package


class ExtensionHost:
    def __init__(
        self,
        *,
        dirs: list[tuple[Path, bool]],
        options,
        disable_all: bool = False,
        disable_extra: bool = False,
        models_dir: Path | None = None,
        lists: Callable[[str], list[str]] | None = None,
    ):
        self.dirs, self.options, self.models_dir, self.lists = dirs, options, models_dir, lists
        self.disable_all, self.disable_extra = disable_all, disable_extra
        self.records: dict[str, ExtensionRecord] = {}
        self.options.add_definition(OptionDef("disabled_extensions", [], "Disabled extensions", "Extensions", list))
        self.options.add_definition(
            OptionDef(
                "extensions_index_url",
                "",
                "Extension index for the Available tab "
                "(an http(s) URL on a public address; on a server not reachable "
                "from the network also a JSON file in the data dir)",
                "Extensions",
            )
        )

    # --- discovery and loading -----------------------------------------------------------------------------------
    def discover(self) -> list[ExtensionRecord]:
        disabled = set(self.options.get("disabled_extensions") or [])
        for folder, builtin in self.dirs:
            if not folder.is_dir():
                continue
            for path in sorted(
                p
                for p in folder.iterdir()
                if p.is_dir() and (p / "extension.toml").exists() and not p.name.startswith(".")
            ):  # dot folders: installs in progress, trash
                rec = ExtensionRecord(name=path.name, path=path, builtin=False)
                try:
                    rec.manifest = tomllib.loads((path / "extension.toml").read_text())
                    rec.name = str(rec.manifest.get("name") or path.name)
                except (OSError, tomllib.TOMLDecodeError) as e:
                    rec.error = f"extension.toml is unreadable: {e}"
                # built-in: shipped in the repo's extensions/ folder, flagged `builtin = true`, not its own checkout
                rec.builtin = builtin and rec.manifest.get("builtin") is True and not (path / ".git").exists()
                if rec.name in self.records:
                    continue  # the first folder wins (built-ins are listed first)
                rec.enabled = (
                    rec.name not in disabled and not self.disable_all and not (self.disable_extra and not rec.builtin)
                )
                self.records[rec.name] = rec
        return list(self.records.values())

    def load_all(self) -> None:
        for rec in self.records.values():
            if rec.enabled and rec.error is None:
                self._load(rec)

    def _load(self, rec: ExtensionRecord) -> None:
        api = rec.manifest.get("api")
        if api != API_VERSION:
            rec.error = (
                f"targets extension API {api!r}, but this Easel provides API {API_VERSION}: "
                f"update the extension or Easel"
            )
            return
        need = str(rec.manifest.get("min_easel") or "")
        if need and _version_tuple(need) > _version_tuple(VERSION):
            rec.error = f"needs Easel {need} or newer (this is {VERSION})"
            return
        settings = ExtensionSettings(self.options.get, self._define_setting)
        handle = ExtensionHandle(
            name=rec.name,
            path=rec.path,
            settings=settings,
            models_dir=self.models_dir,
            lists=self.lists,
            log=logging.getLogger(f"easel.ext.{rec.name}"),
        )
        package = extension_package(self._package_name(rec), rec.path)
        for script in sorted((rec.path / "scripts").glob("*.py")):
            if script.stem == "__init__":
                continue
            try:
                module = importlib.import_module(f"{package}.scripts.{script.stem}")
                if hasattr(module, "setup"):
                    module.setup(handle)
            except Exception:
                self._fail(rec, f"scripts/{script.name}: setup failed")
                return
        rec.handle = handle

    def _package_name(self, rec: ExtensionRecord) -> str:
        """The extension's name as a package name, unique among this host's extensions ("a-b" and "a_b" differ)."""
        base = re.sub(r"\W", "_", rec.name)
        taken = {re.sub(r"\W", "_", r.name) for r in self.records.values() if r is not rec and r.handle is not None}
        name, i = base, 2
        while name in taken:
            name, i = f"{base}_{i}", i + 1
        return name

    def _define_setting(
        self,
        *,
        key: str,
        default: Any,
        label: str,
        section: str,
        choices=None,
        minimum: float | None = None,
        maximum: float | None = None,
        path: bool = False,
    ) -> None:
        kind = type(default) if isinstance(default, (bool, int, float, str, list)) else str
        self.options.add_definition(
            OptionDef(key, default, label, section, kind, choices=choices, minimum=minimum, maximum=maximum, path=path)
        )

    def report(self, rec: ExtensionRecord, what: str) -> None:
        """Call from an `except` block: log the traceback, and report and disable the extension for the session."""
        self._fail(rec, what)

    def _fail(self, rec: ExtensionRecord, what: str) -> None:
        tb = traceback.format_exc()
        log.error("extension %s: %s\n%s", rec.name, what, tb)
        rec.error = f"{what}: {tb.strip().splitlines()[-1]}"

    # --- what extensions registered ------------------------------------------------------------------------------
    def active(self) -> list[ExtensionRecord]:
        return [r for r in list(self.records.values()) if r.active]  # a copy: installs/uninstalls may run meanwhile

    def routes(self) -> list[tuple[str, str, Callable, tuple[str, ...]]]:
        return [(r.name, path, fn, methods) for r in self.active() for path, fn, methods in r.running.routes]

    def tabs(self) -> list[tuple[str, str, Callable]]:
        return [(r.name, title, build) for r in self.active() for title, build in r.running.tabs]

    def scripts(self, kind: str | None = None) -> list[tuple[ExtensionRecord, Script]]:
        return [(r, s) for r in self.active() for s in r.running.scripts if kind is None or s.shows_in(kind)]

    def find_script(self, title: str, kind: str) -> tuple[ExtensionRecord, Script] | None:
        for rec, s in self.scripts(kind):
            if s.title.lower() == title.lower():
                return rec, s
        return None

    # --- dispatch ------------------------------------------------------------------------------------------------
    def call(self, rec: ExtensionRecord, what: str, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """Run one extension callable; if it raises, report it, disable the extension, and return None. A
        ScriptError (the extension rejects its input) becomes an InvalidRequest; Easel's own errors pass through."""
        if not rec.active:
            return None
        try:
            return fn(*args, **kwargs)
        except EaselError:
            raise  # raised by Easel itself (e.g. runner.generate → InvalidRequest, Interrupted): not the extension's
        except ScriptError as e:
            raise InvalidRequest(f"{rec.name}: {e}") from None  # it rejected its input; it stays enabled
        except Exception:
            self._fail(rec, f"{what} raised")
            return None

    def emit(self, event: str, *args: Any) -> list[Any]:
        assert event in EVENTS
        out = []
        for rec in self.active():
            for fn in list(rec.running.hooks[event]):
                out.append(self.call(rec, f"hook {event}", fn, *args))
        return out

    def has_hooks(self, event: str) -> bool:
        return any(rec.running.hooks[event] for rec in self.active())
