#!/usr/bin/env python3
"""Set up and run the whole test suite: `python3 tools/run_tests.py [extra pytest args]`.

Creates/updates the repo's .venv exactly as launch.py does, adds requirements-test.txt and requirements-ray.txt
(hash-cached too), makes sure Debian's chromium is there for the browser tests (never `playwright install`), then runs
pytest in the venv and exits with its code. "No tests collected" (pytest's 5) counts as a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Sequence

REPO_DIR = Path(__file__).resolve().parent.parent
if str(REPO_DIR) not in sys.path:
    sys.path.insert(0, str(REPO_DIR))

from webui import bootstrap  # noqa: E402  (standard library only)

CHROMIUM = Path("/usr/bin/chromium")
TEST_ENV = {
    "HF_HUB_OFFLINE": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1",
}


def prepare_python() -> Path:
    """The venv python with runtime and test requirements installed (or this python with EASEL_VENV_OK=1)."""
    if bootstrap.venv_ok_override():
        return Path(sys.executable)
    venv = bootstrap.venv_dir(REPO_DIR)
    python = bootstrap.ensure_venv(venv)
    bootstrap.ensure_requirements(python, venv, bootstrap.RUNTIME, REPO_DIR)
    bootstrap.ensure_requirements(python, venv, bootstrap.TEST, REPO_DIR)
    bootstrap.ensure_requirements(python, venv, bootstrap.RAY, REPO_DIR)  # the --workers ray tests
    return python


def find_chromium() -> Path | None:
    if CHROMIUM.exists():
        return CHROMIUM
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    return Path(found) if found else None


def ensure_chromium() -> Path | None:
    """Install Debian's chromium when it is missing and we can (root + apt-get); otherwise say why and go on."""
    found = find_chromium()
    if found:
        return found
    if not shutil.which("apt-get"):
        print("chromium not found and apt-get is unavailable: browser tests will be skipped.", flush=True)
        return None
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        print("chromium not found; install it with `sudo apt-get install -y chromium`. "
              "Browser tests will be skipped.", flush=True)
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        print("$ " + " ".join(cmd), flush=True)
        if subprocess.call(cmd, env=env) != 0:
            print(f"`{' '.join(cmd)}` failed: browser tests will be skipped.", flush=True)
            return None
    return find_chromium()


def names_paths(extra: Sequence[str]) -> bool:
    """Whether the extra args name test paths (tests/x.py, tests/x.py::test_y) rather than the whole suite."""
    return any(not a.startswith("-") and (REPO_DIR / a.split("::")[0]).exists() for a in extra)


def pytest_command(python: Path, extra: Sequence[str]) -> list[str]:
    # Run all of tests/ unless the extra args already name test paths.
    return [str(python), "-m", "pytest", "-q", *([] if names_paths(extra) else ["tests"]), *extra]


def main(argv: Sequence[str] | None = None) -> int:
    extra = list(sys.argv[1:] if argv is None else argv)
    try:
        python = prepare_python()
    except bootstrap.BootstrapError as e:
        print(f"run_tests.py: setup failed: {e}", file=sys.stderr)
        return 1
    chromium = ensure_chromium()
    env = {**os.environ, **TEST_ENV}
    env.pop(bootstrap.REEXEC_ENV, None)
    if chromium:
        env["EASEL_CHROMIUM"] = str(chromium)  # the browser tests launch this, never a downloaded one
    lint_rc = 0 if names_paths(extra) else lint(python, env)
    cmd = pytest_command(python, extra)
    print("$ " + " ".join(cmd), flush=True)
    rc = subprocess.call(cmd, cwd=REPO_DIR, env=env)
    rc = 1 if rc == 5 else rc  # 5: no tests collected, which must not pass CI
    if lint_rc:
        print("ruff check failed (see above): the run fails even though the tests ran.", flush=True)
    return rc or lint_rc


def lint(python: Path, env: dict) -> int:
    """`ruff check` over the repo (rules in ruff.toml), on every full run; the tests still run when it fails."""
    cmd = [str(python), "-m", "ruff", "check", "."]
    print("$ " + " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=REPO_DIR, env=env)


if __name__ == "__main__":
    sys.exit(main())
