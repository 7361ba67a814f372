"""A1111's command-line flags: the parser, the checks that must stop a launch, and the flags safe to show.
The folders they resolve to are in webui.folders, the network-safety rules in webui.exposure (both re-exported here).

Standard library only: launch.py imports this before the venv (and torch, gradio, ...) exists, so that a typo or an
unsafe combination of flags fails in a second instead of after a long install.
"""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path
from typing import Any, Mapping, Sequence

from webui.exposure import (
    LOOPBACK_HOST,
    allowed_hosts,
    api_credentials,
    api_enabled,
    bind_host,
    check_network_security,
    cors_origins,
    gradio_credentials,
    insecurity_warning,
    is_network_exposed,
    parse_auth,
    read_auth_file,
)
from webui.folders import REPO_DIR, Paths, resolve_paths

__all__ = [
    "LOOPBACK_HOST",
    "REPO_DIR",
    "Paths",
    "allowed_hosts",
    "api_credentials",
    "api_enabled",
    "bind_host",
    "build_parser",
    "check_network_security",
    "cors_origins",
    "gradio_credentials",
    "insecurity_warning",
    "is_network_exposed",
    "parse_args",
    "parse_auth",
    "public_cmd_flags",
    "read_auth_file",
    "resolve_paths",
    "validate_args",
    "with_env_args",
]

SECRET_FLAGS = ("gradio_auth", "api_auth")  # values replaced in public_cmd_flags (A1111's cmd-flags leaks them)


class _Refused(argparse.Action):
    """A flag A1111 users may type that Easel deliberately does not offer: fail with the reason, not 'unrecognized'."""

    def __init__(self, option_strings: Sequence[str], dest: str, reason: str = "", **kw: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kw)
        self.reason = reason

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        parser.error(f"{self.option_strings[0]} is not supported: {self.reason}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="launch.py", description="Easel, a Stable Diffusion web UI (A1111 flags).")
    a = p.add_argument
    # Setup
    a("--exit", action="store_true", help="set up the environment, then exit")
    a("--skip-install", action="store_true", help="skip the requirements check and install")
    # Network
    a("--port", type=int, default=7860, help="port to serve on (default 7860)")
    a("--listen", action="store_true", help="bind 0.0.0.0 (reachable from the network; needs auth)")
    a("--server-name", type=str, default=None, help="host/address to bind (overrides --listen)")
    a("--share", action="store_true", help="open a public Gradio share tunnel (needs auth)")
    a("--api", action="store_true", help="serve the /sdapi/v1 API next to the UI")
    a("--nowebui", action="store_true", help="serve the API only, without the UI")
    a("--gradio-auth", type=str, default=None, metavar="USER:PASS[,...]", help="UI credentials")
    a("--gradio-auth-path", type=str, default=None, metavar="FILE", help="file of UI credentials (lines of u:p,...)")
    a("--api-auth", type=str, default=None, metavar="USER:PASS[,...]", help="API credentials (HTTP Basic)")
    a(
        "--api-auth-path",
        type=str,
        default=None,
        metavar="FILE",
        help="file of API credentials (lines of u:p,...), so passwords need not appear in ps",
    )
    a(
        "--allowed-hosts",
        type=str,
        default=None,
        metavar="HOSTS",
        help="comma-separated Host names the server answers to (loopback names always); others get 400",
    )
    a("--insecure-no-auth", action="store_true", help="allow --listen/--share/--server-name without any auth")
    a("--cors-allow-origins", type=str, default=None, metavar="ORIGINS", help="comma-separated allowed origins")
    a("--tls-keyfile", type=str, default=None, help="TLS private key file (with --tls-certfile)")
    a("--tls-certfile", type=str, default=None, help="TLS certificate file (with --tls-keyfile)")
    a("--max-body-size", type=int, default=64, metavar="MB", help="largest accepted request body in MB (default 64)")
    a("--autolaunch", action="store_true", help="open the UI in the system browser on start")
    a("--theme", type=str, default=None, choices=("light", "dark"), help="force the light or dark theme")
    # Folders
    a("--data-dir", type=str, default=str(REPO_DIR), help="root of user data (default: the repo folder)")
    a("--models-dir", type=str, default=None, help="model tree (default: <data-dir>/models)")
    a("--ckpt", type=str, default=None, help="checkpoint to load first: a path or a title")
    a("--ckpt-dir", type=str, default=None, help="checkpoints (default: <models-dir>/Stable-diffusion)")
    a("--vae-dir", type=str, default=None, help="VAEs (default: <models-dir>/VAE)")
    a("--lora-dir", type=str, default=None, help="LoRAs (default: <models-dir>/Lora)")
    a("--embeddings-dir", type=str, default=None, help="textual inversion embeddings (default: <data-dir>/embeddings)")
    a("--extensions-dir", type=str, default=None, help="extensions (default: <data-dir>/extensions)")
    a("--styles-file", type=str, action="append", default=[], help="styles CSV; repeat for more")
    # Device
    a("--use-cpu", type=str, nargs="+", default=[], metavar="MODULE", help="run these modules on the CPU ('all')")
    a("--device-id", type=int, default=None, help="CUDA device index")
    a("--no-half", action="store_true", help="run models in fp32")
    a("--no-half-vae", action="store_true", help="run the VAE in fp32")
    a("--medvram", action="store_true", help="GPU: one model part on the device at a time (model CPU offload)")
    a("--lowvram", action="store_true", help="GPU: blocks to the device group by group (group offloading)")
    a(
        "--lowram",
        action="store_true",
        help="CPU: keep SD3/FLUX text encoders out of RAM between prompts (read from their files for each encoding)",
    )
    a(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="CPU threads for torch (default: the physical cores, unless OMP_NUM_THREADS is set)",
    )
    # Workers (docs/scaling.md)
    a(
        "--workers",
        type=str,
        default="local",
        metavar="local|ray|ray://HOST:PORT",
        help="where jobs run: 'local' (default, one worker thread, no Ray), 'ray' (a local Ray runtime with one "
        "worker per GPU, or --ray-num-workers on CPU) or ray://HOST:PORT (join a Ray cluster through Ray Client)",
    )
    a(
        "--ray-address",
        type=str,
        default=None,
        metavar="ADDRESS",
        help="join an existing Ray cluster ('auto': the one on this machine) instead of starting one; implies "
        "--workers ray",
    )
    a(
        "--ray-num-workers",
        type=int,
        default=None,
        metavar="N",
        help="how many Ray workers to start (default: one per GPU, else 1 on the CPU)",
    )
    a(
        "--ray-max-retries",
        type=int,
        default=2,
        metavar="N",
        help="how many times a job whose worker died is re-queued before it fails (default 2)",
    )
    a(
        "--database-url",
        type=str,
        default=None,
        metavar="URL",
        help="the job history: sqlite:///FILE (default: <data-dir>/easel.db) or postgresql://USER@HOST[:PORT]/DB "
        "(a head that must survive its machine; password from ~/.pgpass or PGPASSWORD)",
    )
    a(
        "--ray-worker-data-dir",
        type=str,
        default=None,
        metavar="DIR",
        help="each worker's own data folder, on its machine (default: the head's folders, shared): the models a job "
        "needs are sent from the head by sha256 and kept there",
    )
    # Extensions
    a("--enable-insecure-extension-access", action="store_true", help="allow installing extensions when exposed")
    a(
        "--allow-path-options",
        action="store_true",
        help="let remote users change path options (outdir_*, "
        "control_net_models_path, ...) when exposed; even then only to folders inside the data or models dir",
    )
    a(
        "--allow-private-downloads",
        action="store_true",
        help="let model installs by URL download from loopback and private (LAN) addresses; refused by default (SSRF)",
    )
    a("--disable-all-extensions", action="store_true", help="load no extensions")
    a("--disable-extra-extensions", action="store_true", help="load only the built-in extensions")
    a("--disable-safe-unpickle", action=_Refused, reason="Easel only loads .ckpt files with weights_only=True")
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse `argv` (default: sys.argv[1:]). Unknown flags are an error, as in A1111."""
    return build_parser().parse_args(argv)


def with_env_args(argv: Sequence[str], environ: Mapping[str, str] = os.environ) -> list[str]:
    """argv plus A1111's COMMANDLINE_ARGS environment variable (what webui-user.sh users set)."""
    return [*argv, *shlex.split(environ.get("COMMANDLINE_ARGS", ""))]


def validate_args(ns: argparse.Namespace) -> list[str]:
    """Every problem that must stop the launch (malformed auth, TLS half-configured, unsafe exposure, ...)."""
    errors = []
    for flag, value in (("--gradio-auth", ns.gradio_auth), ("--api-auth", ns.api_auth)):
        if value is not None:
            try:
                parse_auth(value)
            except ValueError as e:
                errors.append(f"{flag}: {e}")
    for flag, path in (("--gradio-auth-path", ns.gradio_auth_path), ("--api-auth-path", ns.api_auth_path)):
        if path:
            try:
                read_auth_file(path)
            except (OSError, ValueError) as e:
                reason = e.strerror if isinstance(e, OSError) and e.strerror else e
                errors.append(f"{flag} {path}: {reason}")
    if bool(ns.tls_keyfile) != bool(ns.tls_certfile):
        errors.append("--tls-keyfile and --tls-certfile must be given together")
    for flag, value in (("--tls-keyfile", ns.tls_keyfile), ("--tls-certfile", ns.tls_certfile)):
        if value and not Path(value).expanduser().is_file():
            errors.append(f"{flag}: no such file: {value}")
    if not 0 <= ns.port <= 65535:
        errors.append(f"--port {ns.port}: must be between 0 and 65535")
    if ns.max_body_size <= 0:
        errors.append("--max-body-size must be a positive number of MB")
    workers = getattr(ns, "workers", "local")
    if workers not in ("local", "ray") and not str(workers).startswith("ray://"):
        errors.append(f"--workers {workers}: must be local, ray or ray://HOST:PORT")
    if getattr(ns, "ray_num_workers", None) is not None and ns.ray_num_workers < 1:
        errors.append(f"--ray-num-workers {ns.ray_num_workers}: must be 1 or more")
    url = getattr(ns, "database_url", None)
    if url is not None and not str(url).startswith(("sqlite:///", "postgresql://", "postgres://")):
        errors.append("--database-url must be sqlite:///FILE or postgresql://USER@HOST[:PORT]/DB")
    if getattr(ns, "ray_max_retries", 0) < 0:
        errors.append("--ray-max-retries must be 0 or more")
    if getattr(ns, "threads", None) is not None and ns.threads < 1:
        errors.append(f"--threads {ns.threads}: must be 1 or more")
    return errors + [m for m in [check_network_security(ns)] if m]


def public_cmd_flags(ns: argparse.Namespace) -> dict[str, Any]:
    """vars(ns) safe to show (GET /sdapi/v1/cmd-flags, logs): secrets become "***" (or stay None when unset)."""
    flags = {k: (list(v) if isinstance(v, list) else v) for k, v in vars(ns).items()}
    for key in SECRET_FLAGS:
        if flags.get(key) is not None:
            flags[key] = "***"
    return flags
