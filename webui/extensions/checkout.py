"""The tools an extension install runs: git without prompts (and without the ext:: transport), pip through
`_run` (a failure is an ExtensionInstallError with the tool's own last message), a remote shown without credentials,
and an extension's extension.toml (its API version, its pip requirements)."""

from __future__ import annotations

import os
import subprocess
import tomllib
import urllib.parse
from pathlib import Path
from typing import Any

from webui.errors import EaselError
from webui.extensions.api import API_VERSION

GIT_TIMEOUT = 300
PIP_TIMEOUT = 1800


class ExtensionInstallError(EaselError):
    status = 400  # a clone, update or requirements install failed; the message says which and why


def _run(cmd: list[str], what: str, timeout: int, **kw: Any) -> str:
    """Run a command; a failure raises ExtensionInstallError with the tool's own last message."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    except FileNotFoundError:
        raise ExtensionInstallError(f"{cmd[0]} is not installed: it is needed to manage extensions") from None
    except subprocess.TimeoutExpired:
        raise ExtensionInstallError(f"{what} timed out after {timeout} s") from None
    if proc.returncode:
        lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
        raise ExtensionInstallError(f"{what} failed: {lines[-1] if lines else f'exit {proc.returncode}'}")
    return proc.stdout.strip()


def git(*args: str, cwd: Path | None = None, timeout: int = GIT_TIMEOUT) -> str:
    """git without prompts (no terminal, no askpass) and without the ext:: transport."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "echo", "LC_ALL": "C"}
    return _run(["git", "-c", "protocol.ext.allow=never", *args], f"git {args[0]}", timeout, cwd=cwd, env=env)


def _try_git(*args: str, cwd: Path) -> str | None:
    try:
        return git(*args, cwd=cwd, timeout=30) or None
    except ExtensionInstallError:
        return None  # not a checkout, no remote, ...


def public_url(url: str | None) -> str | None:
    """A remote without credentials (https://user:token@host/... → https://host/...)."""
    parts = urllib.parse.urlsplit(url) if url and "://" in url else None
    if parts is None or "@" not in parts.netloc:
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
        raise ExtensionInstallError(
            f"it targets extension API {manifest.get('api')!r}, but this Easel provides API "
            f"{API_VERSION}: look for a version of the extension made for API {API_VERSION}"
        )
    return manifest


def requirements(manifest: dict[str, Any]) -> list[str]:
    reqs = manifest.get("requires") or []
    reqs = [reqs] if isinstance(reqs, str) else reqs
    if not isinstance(reqs, list) or not all(
        isinstance(r, str) and r.strip() and not r.strip().startswith("-") for r in reqs
    ):
        raise ExtensionInstallError("extension.toml: `requires` must be a list of pip requirements (no pip options)")
    return [r.strip() for r in reqs]


def folder_name_for(url: str) -> str:
    tail = url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    return tail.removesuffix(".git")
