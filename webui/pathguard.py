"""Confinement of user-supplied paths: one realpath-based check, so `../`, absolute paths and symlinks that lead out
of the allowed folders are all caught the same way.

On loopback Easel keeps A1111's freedom (any folder the user names); when the server is reachable from the network
(`flags.is_network_exposed`), every path a remote user sends must resolve inside the data dir or the models dir.
Refusals never say whether the named path exists: "outside" and "missing" read the same.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from webui.errors import InvalidRequest

if TYPE_CHECKING:
    from webui.app import Application


class PathOutside(InvalidRequest):
    """A path that resolves (symlinks followed) outside every allowed root."""


def _real(path: str | os.PathLike) -> Path:
    return Path(os.path.realpath(os.path.expanduser(os.fspath(path))))


def is_inside(path: str | os.PathLike, roots: Iterable[str | os.PathLike]) -> bool:
    """True when `path`, with every symlink resolved, is one of `roots` or below one of them."""
    real = _real(path)
    return any(real == r or r in real.parents for r in (_real(root) for root in roots))


def confine(
    path: str | os.PathLike,
    roots: Iterable[str | os.PathLike],
    *,
    base: str | os.PathLike | None = None,
    what: str = "path",
) -> Path:
    """`path` resolved (relative ones against `base`, else the first root), if it stays inside one of `roots`.

    Raises PathOutside otherwise, with a message that names `what` but not the resolved target, and reads the same
    whether or not the target exists."""
    roots = [Path(r) for r in roots]
    text = os.fspath(path)
    if not roots or not text.strip() or "\x00" in text:
        raise PathOutside(f"{what} is not allowed: {text!r}")
    candidate = Path(os.path.expanduser(text))
    if not candidate.is_absolute():
        candidate = Path(base if base is not None else roots[0]) / candidate
    if not is_inside(candidate, roots):
        raise PathOutside(
            f"{what} {text!r} is not inside the data or models folder (the server is reachable "
            "from the network, so only paths there are allowed)"
        )
    return _real(candidate)


def exposed_roots(application: Application) -> tuple[Path, ...] | None:
    """The folders remote users may name when the server is exposed, or None on loopback (no confinement)."""
    from webui.flags import is_network_exposed

    if not is_network_exposed(application.ns):
        return None
    return (application.paths.data_dir, application.paths.models_dir)


def user_path(application: Application, value: str, *, what: str) -> Path:
    """A folder or file a user typed or sent: confined to the data/models dirs when exposed, as given otherwise."""
    roots = exposed_roots(application)
    if roots is None:
        return Path(value).expanduser()
    return confine(value, roots, base=application.paths.data_dir, what=what)
