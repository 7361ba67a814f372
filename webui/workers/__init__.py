"""Where jobs run. `--workers local` (the default) is the JobQueue's own worker thread and imports nothing from here
but this file; `--workers ray`, `ray://HOST:PORT` or `--ray-address` attach a RayPool (pool.py, which imports Ray)
to the queue. See docs/scaling.md."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from webui.workers.remote import remote_work  # noqa: F401  (the Application's one import from here)

if TYPE_CHECKING:
    from webui.app import Application


def ray_address(ns: Any) -> tuple[bool, str | None]:
    """(use Ray?, the cluster to join or None for a private local runtime) from the flags."""
    workers = str(getattr(ns, "workers", "local") or "local")
    address = getattr(ns, "ray_address", None)
    if workers.startswith("ray://"):
        return True, workers
    if address:
        return True, address
    return workers == "ray", None


def cluster_token_auth() -> None:
    """Joining a running cluster (ray://, --ray-address): Ray 2.60 clusters require their auth token, but a driver
    that joins one (a Ray Client one, or one given a GCS address) sends it only when RAY_AUTH_MODE=token is set
    before Ray is imported; only a driver that starts its own runtime finds the token by itself. Set it when a token
    is where Ray keeps one (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token). An explicit RAY_AUTH_MODE is
    left alone."""
    if "RAY_AUTH_MODE" in os.environ:
        return
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.expanduser("~/.ray/auth_token")
    if os.environ.get("RAY_AUTH_TOKEN") or os.path.isfile(path):
        os.environ["RAY_AUTH_MODE"] = "token"


def attach_workers(application: Application) -> Any:
    """The RayPool attached to the application's queue (started with it), or None for the local worker."""
    use_ray, address = ray_address(application.ns)
    if not use_ray:
        return None
    if address:
        cluster_token_auth()
    try:
        from webui.workers.pool import RayPool
    except ImportError as e:
        from webui.errors import InvalidRequest

        raise InvalidRequest(f"--workers ray needs Ray: pip install -r requirements-ray.txt ({e})") from None
    ns = application.ns
    pool = RayPool(
        application,
        address=address,
        num_workers=getattr(ns, "ray_num_workers", None),
        threads=getattr(ns, "threads", None),
        max_retries=int(getattr(ns, "ray_max_retries", 2)),
    )
    application.jobs.executor = pool
    return pool
