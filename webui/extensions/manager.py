"""Install, update, enable/disable and uninstall extensions with git; the available ones from an index JSON
(webui/extensions/index.py; git, pip and the manifest: webui/extensions/checkout.py).

An install clones into a temp folder inside the extensions dir, installs the manifest's `requires` with this
interpreter's pip, and only then renames the folder into place: a failed clone or install leaves nothing behind.
What changes the code that runs is refused (403) when the server is reachable from the network, unless
--enable-insecure-extension-access. New code loads at the next start; disabling stops hooks and routes at once."""

from __future__ import annotations

import builtins
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from webui.errors import EaselError, Forbidden, InvalidRequest, NotFound
from webui.extensions.checkout import (
    PIP_TIMEOUT,
    ExtensionInstallError,
    _run,
    _try_git,
    folder_name_for,
    git,
    public_url,
    read_manifest,
    requirements,
)
from webui.extensions.host import ExtensionRecord
from webui.extensions.index import IndexNotSet, IndexUnavailable, read_index
from webui.flags import is_network_exposed

if TYPE_CHECKING:
    from webui.app import Application

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")

__all__ = [
    "AlreadyInstalled",
    "ExtensionInfo",
    "ExtensionInstallError",
    "ExtensionManager",
    "IndexNotSet",
    "IndexUnavailable",
    "git",
    "manager_for",
    "read_index",
    "read_manifest",
]


class AlreadyInstalled(EaselError):
    status = 409


@dataclass
class ExtensionInfo:
    name: str
    version: str
    enabled: bool  # the user's choice (persisted in `disabled_extensions`)
    builtin: bool
    remote: str | None
    branch: str | None
    commit_hash: str | None
    commit_date: int | None  # Unix time, as A1111
    status: str  # "ok", "error", "disabled", "restart to load", ...
    error: str | None
    update: str | None  # the last "Check for updates" result
    description: str
    path: str


class ExtensionManager:
    """The extension operations the Extensions tab and the API share. One per Application (`manager_for`)."""

    def __init__(self, application: Application):
        self.app = application
        self.host = application.extensions
        self.dir: Path = application.paths.extensions_dir
        self.pip_args: list[str] = []  # extra pip arguments (tests: ["--no-index"])
        self.updates: dict[str, str] = {}
        self._lock = threading.RLock()

    # --- security ------------------------------------------------------------------------------------------------
    @property
    def locked_reason(self) -> str | None:
        ns = self.app.ns
        if is_network_exposed(ns) and not getattr(ns, "enable_insecure_extension_access", False):
            return (
                "Installing, updating, enabling, disabling and uninstalling extensions is turned off because this "
                "server is reachable from the network (--listen, --share or --server-name): an extension runs "
                "code on this machine. Restart with --enable-insecure-extension-access to allow it."
            )
        return None

    def _guard(self) -> None:
        if self.locked_reason:
            raise Forbidden(self.locked_reason)

    # --- listing -------------------------------------------------------------------------------------------------
    def record(self, name: str) -> ExtensionRecord:
        if name not in self.host.records:
            raise NotFound(f"no extension named {name!r}; installed: {sorted(self.host.records)}")
        return self.host.records[name]

    def _disabled(self) -> list[str]:
        return list(self.app.options.get("disabled_extensions") or [])

    def _flag_off(self, rec: ExtensionRecord) -> str | None:
        return (
            "--disable-all-extensions"
            if self.host.disable_all
            else "--disable-extra-extensions"
            if self.host.disable_extra and not rec.builtin
            else None
        )

    def info(self, rec: ExtensionRecord) -> ExtensionInfo:
        flag = self._flag_off(rec)
        status = (
            "error"
            if rec.error
            else f"off: {flag}"
            if flag
            else "disabled"
            if not rec.enabled
            else "restart to load"
            if rec.handle is None
            else "ok"
        )
        sha = date = branch = remote = None
        if (rec.path / ".git").exists():
            sha, _, date = (_try_git("log", "-1", "--format=%H %ct", cwd=rec.path) or "").partition(" ")
            branch = _try_git("rev-parse", "--abbrev-ref", "HEAD", cwd=rec.path)
            remote = _try_git("config", "--get", "remote.origin.url", cwd=rec.path)
        return ExtensionInfo(
            name=rec.name,
            version=rec.version,
            enabled=rec.name not in self._disabled(),
            builtin=rec.builtin,
            remote=public_url(remote),
            branch=None if branch == "HEAD" else branch,
            commit_hash=sha or None,
            commit_date=int(date) if date and date.isdigit() else None,
            status=status,
            error=rec.error,
            update=self.updates.get(rec.name),
            description=str(rec.manifest.get("description", "")),
            path=str(rec.path),
        )

    def list(self) -> list[ExtensionInfo]:
        return [self.info(rec) for rec in list(self.host.records.values())]

    # --- install -------------------------------------------------------------------------------------------------
    def _pip(self, reqs: builtins.list[str]) -> None:
        """Install requirements into this interpreter's environment (the venv Easel runs in)."""
        if reqs:
            _run(
                [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *self.pip_args, *reqs],
                f"installing requirements {reqs}",
                PIP_TIMEOUT,
            )

    def install(self, url: str, *, branch: str | None = None, name: str | None = None) -> ExtensionInfo:
        """Clone `url` (a git URL, a local path or a file:// URL; optionally `branch`) into the extensions dir as
        `name`, then install its requirements. It loads at the next start."""
        self._guard()
        source, branch = (url or "").strip(), (branch or "").strip() or None
        if not source or source.startswith("-") or "::" in source:
            raise InvalidRequest(f"not a git URL or path: {source!r}")
        if "://" not in source and not re.match(r"^[\w.-]+@[\w.-]+:", source):  # neither a URL nor user@host:path
            if not Path(source).expanduser().is_dir():
                raise InvalidRequest(f"no such folder: {source}")
            source = str(Path(source).expanduser().resolve())
        folder = (name or "").strip() or folder_name_for(source)
        if not NAME_RE.match(folder):
            raise InvalidRequest(f"bad folder name {folder!r}: use letters, digits, '.', '_' and '-'")
        if branch and (branch.startswith("-") or not re.match(r"^[\w./-]+$", branch)):
            raise InvalidRequest(f"bad branch name {branch!r}")
        with self._lock:
            self.dir.mkdir(parents=True, exist_ok=True)
            target = self.dir / folder
            if target.exists():
                raise AlreadyInstalled(f"{target} already exists: uninstall it first, or pick another folder name")
            tmp = Path(tempfile.mkdtemp(prefix=f".installing-{folder}-", dir=self.dir))
            try:
                git("clone", *(["--branch", branch] if branch else []), "--", source, str(tmp / folder))
                manifest = read_manifest(tmp / folder)
                if str(manifest.get("name") or folder) in self.host.records:
                    raise AlreadyInstalled(f"an extension named {manifest.get('name') or folder!r} is installed")
                self._pip(requirements(manifest))
                os.rename(tmp / folder, target)  # (fails if `target` appeared meanwhile and is not empty)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            self.host.discover()  # listed now ("restart to load"); it runs from the next start
            return self.info(next(r for r in self.host.records.values() if r.path == target))

    # --- updates -------------------------------------------------------------------------------------------------
    def _git_extension(self, name: str) -> ExtensionRecord:
        if not (self.record(name).path / ".git").exists():
            raise InvalidRequest(f"{name} is not a git checkout" + (" (built in)" if self.record(name).builtin else ""))
        return self.record(name)

    def check_update(self, name: str) -> str:
        rec = self._git_extension(name)
        try:
            git("fetch", "--quiet", cwd=rec.path)
            counts = git("rev-list", "--left-right", "--count", "@{u}...HEAD", cwd=rec.path).partition("\t")
            behind, ahead = int(counts[0]), int(counts[2])
            status = (
                f"diverged ({ahead} local, {behind} new commits): can't fast-forward"
                if behind and ahead
                else f"update available ({behind} new commits)"
                if behind
                else "up to date"
            )
        except ExtensionInstallError as e:
            status = f"check failed: {e.message}"
        self.updates[name] = status
        return status

    def check_updates(self) -> dict[str, str]:
        return {
            rec.name: self.check_update(rec.name)
            for rec in list(self.host.records.values())
            if (rec.path / ".git").exists()
        }

    def update(self, name: str) -> ExtensionInfo:
        """Fast-forward to the upstream branch (refused otherwise), then install its requirements. Loads at the
        next start."""
        self._guard()
        with self._lock:
            rec = self._git_extension(name)
            git("fetch", "--quiet", cwd=rec.path)
            old = git("rev-parse", "HEAD", cwd=rec.path)
            try:
                git("merge", "--ff-only", "@{u}", cwd=rec.path)
            except ExtensionInstallError as e:
                raise ExtensionInstallError(f"{name} can't be fast-forwarded (local changes?): {e.message}") from None
            try:
                self._pip(requirements(read_manifest(rec.path)))
            except ExtensionInstallError:
                git("reset", "--keep", old, cwd=rec.path)  # back to what was running
                raise
            changed = git("rev-parse", "HEAD", cwd=rec.path) != old
            self.updates[name] = "updated: restart to load" if changed else "up to date"
            return self.info(rec)

    # --- uninstall, enable/disable -------------------------------------------------------------------------------
    def uninstall(self, name: str) -> None:
        self._guard()
        with self._lock:
            rec = self.record(name)
            if rec.builtin:
                raise InvalidRequest(f"{name} is built in and can't be uninstalled; disable it instead")
            if rec.path.resolve().parent != self.dir.resolve():
                raise InvalidRequest(f"{name} is not in the extensions dir ({self.dir}); remove {rec.path} by hand")
            trash = rec.path.with_name(f".trash-{rec.path.name}-{int(time.time() * 1000)}")
            os.rename(rec.path, trash)  # gone from discovery at once, even if the delete below is slow
            shutil.rmtree(trash, ignore_errors=True)
            rec.enabled = False  # its hooks and routes stop now
            del self.host.records[name]
            self.updates.pop(name, None)
            if name in self._disabled():
                self.app.options.set({"disabled_extensions": [n for n in self._disabled() if n != name]})

    def set_enabled(self, name: str, enabled: bool) -> ExtensionInfo:
        self._guard()
        rec = self.record(name)
        disabled = [n for n in self._disabled() if n != name] + ([] if enabled else [name])
        self.app.options.set({"disabled_extensions": disabled})
        rec.enabled = enabled and self._flag_off(rec) is None
        return self.info(rec)

    def apply_enabled(self, names: builtins.list[str] | set[str]) -> builtins.list[ExtensionInfo]:
        """Persist exactly `names` as the enabled extensions ("Apply and restart")."""
        self._guard()
        names = set(names)
        if names - set(self.host.records):
            raise NotFound(f"no extension named {sorted(names - set(self.host.records))}")
        others = [n for n in self._disabled() if n not in self.host.records]  # keep choices for absent ones
        self.app.options.set({"disabled_extensions": others + [n for n in self.host.records if n not in names]})
        for rec in self.host.records.values():
            rec.enabled = rec.name in names and self._flag_off(rec) is None
        return self.list()

    # --- available -----------------------------------------------------------------------------------------------
    def available(self, source: str | None = None) -> builtins.list[dict[str, Any]]:
        """Entries of the index JSON (A1111's {"extensions": [...]} or a plain list): name, url, description,
        tags, installed. `source` (the Extensions tab's box) must be the option's value while extensions are locked,
        so a remote user can't make the server fetch something else."""
        configured = (self.app.options.get("extensions_index_url") or "").strip()
        source = configured if source is None else source.strip()
        if source != configured and self.locked_reason:
            raise Forbidden(
                "the extension index is read-only while the server is reachable from the network; "
                "the one set in Settings is used"
            )
        exposed = is_network_exposed(self.app.ns)
        entries = read_index(source, data_dir=None if exposed else self.app.paths.data_dir)
        installed = {_norm(i.remote) for i in self.list() if i.remote} | set(self.host.records)
        return [{**e, "installed": _norm(e["url"]) in installed or e["name"] in installed} for e in entries]


def _norm(url: str | None) -> str:
    return (public_url(url) or "").strip().rstrip("/").removesuffix(".git").lower()


def manager_for(application: Application) -> ExtensionManager:
    """The Application's ExtensionManager (made on first use, so the tab and the API share update results)."""
    if application.extension_manager is None:
        application.extension_manager = ExtensionManager(application)
    return application.extension_manager
