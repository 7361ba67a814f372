"""Install, update, enable/disable and uninstall extensions with git, and list the available ones from an index.

Installs clone into a temp folder beside the extensions dir, install the manifest's `requires` with this
interpreter's pip, and only then rename the folder into place, so a failed clone or install leaves nothing behind.
Everything that changes what code runs is refused (403) when the server is reachable from the network, unless
--enable-insecure-extension-access is given. Changes take effect at the next start ("Apply and restart"); disabling
stops an extension's hooks, scripts and routes at once.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from webui.errors import EaselError, Forbidden, InvalidRequest, NotFound
from webui.extensions.api import API_VERSION
from webui.extensions.host import ExtensionRecord
from webui.flags import is_network_exposed

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
GIT_TIMEOUT = 300
PIP_TIMEOUT = 1800


class ExtensionInstallError(EaselError):
    """A clone, update or requirements install failed (the message says which and why)."""

    status = 400


class AlreadyInstalled(EaselError):
    status = 409


class IndexUnavailable(EaselError):
    """The extension index can't be read: not set, unreachable, or not JSON."""

    status = 502


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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def git(*args: str, cwd: Path | None = None, timeout: int = GIT_TIMEOUT) -> str:
    """Run git without prompts (no terminal, no askpass); a failure raises with git's own last message."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "echo", "LC_ALL": "C"}
    cmd = ["git", "-c", "protocol.ext.allow=never", *args]
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    except FileNotFoundError:
        raise ExtensionInstallError("git is not installed: install git to manage extensions") from None
    except subprocess.TimeoutExpired:
        raise ExtensionInstallError(f"git {args[0]} timed out after {timeout} s") from None
    if proc.returncode:
        lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
        raise ExtensionInstallError(f"git {args[0]} failed: {lines[-1] if lines else f'exit {proc.returncode}'}")
    return proc.stdout.strip()


def _try_git(*args: str, cwd: Path) -> str | None:
    try:
        return git(*args, cwd=cwd, timeout=30) or None
    except ExtensionInstallError:
        return None


def public_url(url: str | None) -> str | None:
    """A remote without credentials (https://user:token@host/... → https://host/...)."""
    if not url or "://" not in url:
        return url
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def read_manifest(folder: Path) -> dict[str, Any]:
    file = folder / "extension.toml"
    if not file.is_file():
        raise ExtensionInstallError("not an Easel extension: it has no extension.toml at its top level")
    try:
        manifest = tomllib.loads(file.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ExtensionInstallError(f"extension.toml is unreadable: {e}") from None
    if manifest.get("api") != API_VERSION:
        raise ExtensionInstallError(f"it targets extension API {manifest.get('api')!r}, but this Easel provides API "
                                    f"{API_VERSION}: look for a version of the extension made for API {API_VERSION}")
    return manifest


def requirements(manifest: dict[str, Any]) -> list[str]:
    reqs = manifest.get("requires") or []
    reqs = [reqs] if isinstance(reqs, str) else reqs
    if not isinstance(reqs, list) or not all(isinstance(r, str) and r.strip() for r in reqs):
        raise ExtensionInstallError("extension.toml: `requires` must be a list of pip requirement strings")
    bad = [r for r in reqs if r.strip().startswith("-")]
    if bad:
        raise ExtensionInstallError(f"extension.toml: `requires` may hold requirements only, not pip options: {bad}")
    return [r.strip() for r in reqs]


def folder_name_for(url: str) -> str:
    tail = url.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    return tail[:-4] if tail.endswith(".git") else tail


class ExtensionManager:
    """The extension operations the Extensions tab and the API share. One per Application (`manager_for`)."""

    def __init__(self, application):
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
            return ("Installing, updating, enabling, disabling and uninstalling extensions is turned off because this "
                    "server is reachable from the network (--listen, --share or --server-name): an extension runs "
                    "code on this machine. Restart with --enable-insecure-extension-access to allow it.")
        return None

    def _guard(self) -> None:
        reason = self.locked_reason
        if reason:
            raise Forbidden(reason)

    # --- listing -------------------------------------------------------------------------------------------------
    def record(self, name: str) -> ExtensionRecord:
        rec = self.host.records.get(name)
        if rec is None:
            raise NotFound(f"no extension named {name!r}; installed: {sorted(self.host.records)}")
        return rec

    def _disabled(self) -> list[str]:
        return list(self.app.options.get("disabled_extensions") or [])

    def _flag_off(self, rec: ExtensionRecord) -> str | None:
        if self.host.disable_all:
            return "--disable-all-extensions"
        if self.host.disable_extra and not rec.builtin:
            return "--disable-extra-extensions"
        return None

    def info(self, rec: ExtensionRecord) -> ExtensionInfo:
        wanted = rec.name not in self._disabled()
        flag = self._flag_off(rec)
        if rec.error:
            status = "error"
        elif flag:
            status = f"off: {flag}"
        elif not rec.enabled:
            status = "disabled"
        elif rec.handle is None:
            status = "restart to load"
        else:
            status = "ok"
        is_git = (rec.path / ".git").exists()
        commit = _try_git("log", "-1", "--format=%H %ct", cwd=rec.path) if is_git else None
        sha, _, date = (commit or "").partition(" ")
        branch = _try_git("rev-parse", "--abbrev-ref", "HEAD", cwd=rec.path) if is_git else None
        remote = _try_git("config", "--get", "remote.origin.url", cwd=rec.path) if is_git else None
        return ExtensionInfo(name=rec.name, version=rec.version, enabled=wanted, builtin=rec.builtin,
                             remote=public_url(remote), branch=None if branch == "HEAD" else branch,
                             commit_hash=sha or None, commit_date=int(date) if date.isdigit() else None,
                             status=status, error=rec.error, update=self.updates.get(rec.name),
                             description=str(rec.manifest.get("description", "")), path=str(rec.path))

    def list(self) -> list[ExtensionInfo]:
        return [self.info(rec) for rec in list(self.host.records.values())]

    # --- install -------------------------------------------------------------------------------------------------
    def _source(self, url: str) -> str:
        url = (url or "").strip()
        if not url:
            raise InvalidRequest("url is empty: give a git URL, a local path or a file:// URL")
        if url.startswith("-") or "::" in url:
            raise InvalidRequest(f"not a git URL or path: {url!r}")
        if "://" not in url and not re.match(r"^[\w.-]+@[\w.-]+:", url):  # not a URL nor scp-like: a local path
            path = Path(url).expanduser()
            if not path.is_dir():
                raise InvalidRequest(f"no such folder: {url}")
            return str(path.resolve())
        return url

    def _pip(self, reqs: list[str]) -> None:
        if not reqs:
            return
        cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *self.pip_args, *reqs]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise ExtensionInstallError(f"installing requirements {reqs} timed out") from None
        if proc.returncode:
            lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
            raise ExtensionInstallError(f"installing requirements {reqs} failed: "
                                        f"{lines[-1] if lines else f'pip exit {proc.returncode}'}")

    def install(self, url: str, *, branch: str | None = None, name: str | None = None) -> ExtensionInfo:
        """Clone `url` (optionally `branch`) into the extensions dir as `name`, then install its requirements. It
        loads at the next start."""
        self._guard()
        source = self._source(url)
        folder = (name or "").strip() or folder_name_for(source)
        if not NAME_RE.match(folder):
            raise InvalidRequest(f"bad folder name {folder!r}: use letters, digits, '.', '_' and '-'")
        branch = (branch or "").strip() or None
        if branch and (branch.startswith("-") or not re.match(r"^[\w./-]+$", branch)):
            raise InvalidRequest(f"bad branch name {branch!r}")
        with self._lock:
            self.dir.mkdir(parents=True, exist_ok=True)
            target = self.dir / folder
            if target.exists():
                raise AlreadyInstalled(f"{target} already exists: uninstall it first, or pick another folder name")
            tmp = Path(tempfile.mkdtemp(prefix=f".installing-{folder}-", dir=self.dir))
            try:
                checkout = tmp / folder
                git("clone", *(["--branch", branch] if branch else []), "--", source, str(checkout))
                manifest = read_manifest(checkout)
                ext_name = str(manifest.get("name") or folder)
                if ext_name in self.host.records:
                    raise AlreadyInstalled(f"an extension named {ext_name!r} is already installed "
                                           f"({self.host.records[ext_name].path})")
                self._pip(requirements(manifest))
                if target.exists():
                    raise AlreadyInstalled(f"{target} appeared while installing")
                os.rename(checkout, target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            self.host.discover()  # listed now ("restart to load"); it runs from the next start
            rec = next((r for r in self.host.records.values() if r.path == target), None)
            return self.info(rec) if rec else self.info(self.record(ext_name))

    # --- updates -------------------------------------------------------------------------------------------------
    def _git_extension(self, name: str) -> ExtensionRecord:
        rec = self.record(name)
        if not (rec.path / ".git").exists():
            raise InvalidRequest(f"{name} is not a git checkout" + (" (it is built in)" if rec.builtin else ""))
        return rec

    def check_update(self, name: str) -> str:
        rec = self._git_extension(name)
        try:
            git("fetch", "--quiet", cwd=rec.path)
            if _try_git("rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{u}", cwd=rec.path) is None:
                status = "no upstream branch to compare with"
            else:
                behind = int(git("rev-list", "--count", "HEAD..@{u}", cwd=rec.path))
                ahead = int(git("rev-list", "--count", "@{u}..HEAD", cwd=rec.path))
                if behind and ahead:
                    status = f"diverged ({ahead} local, {behind} new commits): can't fast-forward"
                elif behind:
                    status = f"update available ({behind} new commit{'s' if behind > 1 else ''})"
                else:
                    status = "up to date"
        except ExtensionInstallError as e:
            status = f"check failed: {e.message}"
        self.updates[name] = status
        return status

    def check_updates(self) -> dict[str, str]:
        return {rec.name: self.check_update(rec.name) for rec in list(self.host.records.values())
                if (rec.path / ".git").exists()}

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
                raise ExtensionInstallError(f"{name} can't be fast-forwarded (local changes or commits?): "
                                            f"{e.message}") from None
            try:
                manifest = read_manifest(rec.path)
                self._pip(requirements(manifest))
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
            disabled = self._disabled()
            if name in disabled:
                self.app.options.set({"disabled_extensions": [n for n in disabled if n != name]})

    def set_enabled(self, name: str, enabled: bool) -> ExtensionInfo:
        self._guard()
        rec = self.record(name)
        disabled = [n for n in self._disabled() if n != name] + ([] if enabled else [name])
        self.app.options.set({"disabled_extensions": disabled})
        rec.enabled = enabled and self._flag_off(rec) is None
        return self.info(rec)

    def apply_enabled(self, names: list[str] | set[str]) -> list[ExtensionInfo]:
        """Persist exactly `names` as the enabled extensions ("Apply and restart")."""
        self._guard()
        names = set(names)
        unknown = names - set(self.host.records)
        if unknown:
            raise NotFound(f"no extension named {sorted(unknown)}")
        others = [n for n in self._disabled() if n not in self.host.records]  # keep choices for absent ones
        self.app.options.set({"disabled_extensions": others + [n for n in self.host.records if n not in names]})
        for rec in self.host.records.values():
            rec.enabled = rec.name in names and self._flag_off(rec) is None
        return self.list()

    # --- available -----------------------------------------------------------------------------------------------
    def available(self, source: str | None = None) -> list[dict[str, Any]]:
        """Entries of the index JSON (A1111's {"extensions": [...]} or a plain list): name, url, description,
        tags, installed."""
        source = (source if source is not None else self.app.options.get("extensions_index_url") or "").strip()
        if not source:
            raise IndexUnavailable("No extension index is set: put a URL or a JSON file in Settings → Extensions → "
                                   "Extension index")
        try:
            if re.match(r"^https?://", source):
                with urllib.request.urlopen(source, timeout=15) as resp:
                    text = resp.read(16 * 1024 * 1024).decode("utf-8")
            else:
                path = urllib.request.url2pathname(source[7:]) if source.startswith("file://") else source
                text = Path(path).expanduser().read_text(encoding="utf-8")
            data = json.loads(text)
        except (OSError, ValueError) as e:
            raise IndexUnavailable(f"The extension index at {source} can't be reached or read: {e}") from None
        entries = data.get("extensions") if isinstance(data, dict) else data
        if not isinstance(entries, list):
            raise IndexUnavailable(f"The extension index at {source} has no list of extensions")
        installed = {_norm(i.remote) for i in self.list() if i.remote} | set(self.host.records)
        out = []
        for e in entries:
            if isinstance(e, dict) and e.get("url"):
                name = str(e.get("name") or folder_name_for(str(e["url"])))
                out.append({"name": name, "url": str(e["url"]), "description": str(e.get("description", "")),
                            "tags": list(e.get("tags") or []),
                            "installed": _norm(str(e["url"])) in installed or name in installed})
        return out


def _norm(url: str | None) -> str:
    url = (public_url(url) or "").strip().rstrip("/")
    return (url[:-4] if url.endswith(".git") else url).lower()


def manager_for(application) -> ExtensionManager:
    """The Application's ExtensionManager (made on first use, so the tab and the API share update results)."""
    manager = getattr(application, "extension_manager", None)
    if manager is None:
        manager = ExtensionManager(application)
        application.extension_manager = manager
    return manager
