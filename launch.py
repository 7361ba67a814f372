#!/usr/bin/env python3
"""Start Easel: `python3 launch.py [A1111 flags]`.

1. Parse and check the flags (standard library only, so a typo or an unsafe setup fails at once).
2. Outside the repo's .venv: create it if needed and re-execute this script with the venv's python.
3. Inside it: install the requirements when requirements*.txt changed (unless --skip-install),
   stop here with --exit, otherwise start the server (webui.app.main).

EASEL_VENV_OK=1 runs in the current interpreter with no venv and no installs (you manage the environment).
A1111's COMMANDLINE_ARGS environment variable is appended to the command line.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

REPO_DIR = Path(__file__).resolve().parent
if str(REPO_DIR) not in sys.path:
    sys.path.insert(0, str(REPO_DIR))

from webui import bootstrap, flags  # noqa: E402  (both are standard library only)

# Nothing phones home: no hub downloads, no Gradio analytics, no telemetry.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}


def check_flags(ns: argparse.Namespace) -> int:
    """0 when the flags are usable, else print every problem and return 2 (argparse's usage-error code)."""
    errors = flags.validate_args(ns)
    for err in errors:
        print(f"launch.py: error: {err}", file=sys.stderr)
    return 2 if errors else 0


def enter_venv(argv: Sequence[str], skip_install: bool) -> None:
    """Re-execute inside the repo's .venv (creating it first) unless we already run there or may stay here."""
    venv = bootstrap.venv_dir(REPO_DIR)
    if bootstrap.in_venv(venv) or bootstrap.venv_ok_override():
        return
    if skip_install and not bootstrap.venv_python(venv).exists():
        print(f"--skip-install: no {venv}; running with {sys.executable}", file=sys.stderr)
        return
    python = bootstrap.venv_python(venv) if skip_install else bootstrap.ensure_venv(venv)
    bootstrap.reexec(python, Path(__file__).resolve(), argv)


def install(skip_install: bool, workers: str = "local") -> None:
    """Inside the repo venv, bring the requirements up to date (a no-op when their hash is unchanged); OpenVINO's
    CPU kernels as best effort (requirements-openvino.txt, --no-deps: a failed install only warns); the scale-out
    extras too (requirements-ray.txt: Ray, psycopg) when the workers run on Ray or the history is in PostgreSQL (the
    default local worker and SQLite need nothing more)."""
    venv = bootstrap.venv_dir(REPO_DIR)
    if skip_install or not bootstrap.in_venv(venv):
        return  # EASEL_VENV_OK=1 outside the venv: the user manages that environment
    bootstrap.ensure_requirements(Path(sys.executable), venv, bootstrap.RUNTIME, REPO_DIR)
    try:  # OpenVINO's CPU kernels (cpu_attention Automatic, cpu_backend openvino): best effort, torch runs without
        bootstrap.ensure_requirements(Path(sys.executable), venv, bootstrap.OPENVINO, REPO_DIR)
    except bootstrap.BootstrapError as e:
        print(
            f"launch.py: OpenVINO not installed ({e}); the UNet's attention stays on torch's CPU kernel",
            file=sys.stderr,
        )
    if workers != "local":
        bootstrap.ensure_requirements(Path(sys.executable), venv, bootstrap.RAY, REPO_DIR)


def start(ns: argparse.Namespace) -> int:
    os.environ.update(OFFLINE_ENV)  # before gradio / huggingface_hub are imported
    from webui import app  # lazy: needs the installed requirements

    result = app.main(ns)
    return result if isinstance(result, int) else 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ns = flags.parse_args(flags.with_env_args(argv))  # exits 2 on an unknown flag, 0 on --help
    rc = check_flags(ns)
    if rc:
        return rc
    try:
        enter_venv(argv, ns.skip_install)  # returns only when we should run in this interpreter
        os.environ.pop(bootstrap.REEXEC_ENV, None)  # children (restarts, tests) start fresh
        postgres = str(ns.database_url or "").startswith(("postgresql://", "postgres://"))
        install(ns.skip_install, "ray" if ns.ray_address or postgres else ns.workers)
    except bootstrap.BootstrapError as e:
        print(f"launch.py: setup failed: {e}", file=sys.stderr)
        return 1
    warning = flags.insecurity_warning(ns)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    if ns.exit:
        print("Setup complete (--exit).")
        return 0
    return start(ns)


if __name__ == "__main__":
    sys.exit(main())
