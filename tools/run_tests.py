#!/usr/bin/env python3
"""Set up and run the whole test suite: `python3 tools/run_tests.py [extra pytest args]`.

Creates/updates the repo's .venv exactly as launch.py does, adds requirements-test.txt, requirements-ray.txt and
requirements-openvino.txt (--no-deps) (hash-cached too), makes sure Debian's chromium is there for the browser tests
(never `playwright install`), then runs pytest in the venv and exits with its code. "No tests collected" (pytest's
5) counts as a failure.

A full run (no test paths named) also runs `ruff check`, `ruff format --check` over the whole repo, and `mypy`
(mypy.ini), and fails when any does, after the tests ran. Every run prints the
skipped tests (`-rs`) and fails when one was skipped for a reason that is not in `SKIP_REASONS`, or for one that is
but does not hold on this machine (a browser test skipped for want of chromium while /usr/bin/chromium exists): CI
must not go green while silently skipping what this machine can run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable, Mapping, Sequence

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


DEMO_MODEL = REPO_DIR / "models" / "Demo" / "easel-demo.safetensors"
# What the venv has and this CPU can do, as the skip reasons below need it (asked of the venv's python).
PROBE = r"""
import importlib.util, json
facts = {m: importlib.util.find_spec(m) is not None
         for m in ("playwright", "schemathesis", "ligsp", "ray", "psycopg", "scipy")}
try:
    from webui.models.device import cpu_has_native_bf16
    from webui.models import conv_prepack
    facts.update(bf16=bool(cpu_has_native_bf16()), prepack=bool(conv_prepack.available()))
except Exception:
    facts.update(bf16=False, prepack=False)
print(json.dumps(facts))
"""
# The skip reasons that truly depend on the machine: (a regex searched in the reason, whether the thing it says is
# missing really is missing here). A skip whose reason matches none of them, or whose condition is False, fails the run.
SKIP_REASONS: tuple[tuple[str, Callable[[Mapping], bool]], ...] = (
    (r"chromium", lambda f: not f["chromium"]),
    (r"playwright", lambda f: not f["playwright"]),
    (r"no native bf16", lambda f: not f["bf16"]),
    (r"cannot pack bf16 convolution weights", lambda f: not f["prepack"]),
    (r"demo model", lambda f: not f["demo"]),
    (r"node is not installed", lambda f: not f["node"]),
    (r"scipy is not installed", lambda f: not f["scipy"]),
    (r"scipy is installed", lambda f: f["scipy"]),  # its pair runs instead: one of the two always skips
    (r"requirements-ray|could not import 'ray'", lambda f: not (f["ray"] and f["psycopg"])),  # both are in it
    (r"PostgreSQL server binaries not found", lambda f: not f["postgres"]),
    (r"could not import 'schemathesis'", lambda f: not f["schemathesis"]),
    (r"could not import 'ligsp'", lambda f: not f["ligsp"]),
)


def prepare_python() -> Path:
    """The venv python with runtime and test requirements installed (or this python with EASEL_VENV_OK=1)."""
    if bootstrap.venv_ok_override():
        return Path(sys.executable)
    venv = bootstrap.venv_dir(REPO_DIR)
    python = bootstrap.ensure_venv(venv)
    bootstrap.ensure_requirements(python, venv, bootstrap.RUNTIME, REPO_DIR)
    bootstrap.ensure_requirements(python, venv, bootstrap.TEST, REPO_DIR)
    bootstrap.ensure_requirements(python, venv, bootstrap.RAY, REPO_DIR)  # the --workers ray tests
    bootstrap.ensure_requirements(python, venv, bootstrap.OPENVINO, REPO_DIR)  # the cpu_backend openvino tests
    return python


def find_chromium() -> Path | None:
    if CHROMIUM.exists():
        return CHROMIUM
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    return Path(found) if found else None


def ensure_chromium() -> Path | None:
    """Install Debian's chromium when it is missing and we can (root + apt-get); otherwise say why and go on."""
    return find_chromium() or ensure_debian_package("chromium", find_chromium, "browser tests")


def find_postgres() -> Path | None:
    found = shutil.which("initdb") or next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))), None)
    return Path(found) if found else None


def ensure_postgres() -> Path | None:
    """Debian's PostgreSQL server programs for tests/test_history_postgres.py (which starts its own private cluster
    on loopback; nothing is started here)."""
    return find_postgres() or ensure_debian_package(
        "postgresql", find_postgres, "PostgreSQL history tests", recommends=False
    )


def ensure_debian_package(
    package: str, find: Callable[[], Path | None], purpose: str, recommends: bool = True
) -> Path | None:
    """apt-get install `package` when we can (root + apt-get); otherwise say why and go on (the tests that need it
    skip, and the skip list fails the run when the machine could have run them)."""
    if not shutil.which("apt-get"):
        print(f"{package} not found and apt-get is unavailable: {purpose} will be skipped.", flush=True)
        return None
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        print(
            f"{package} not found; install it with `sudo apt-get install -y {package}`. {purpose} will be skipped.",
            flush=True,
        )
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", *([] if recommends else ["--no-install-recommends"]), package]
    for cmd in (["apt-get", "update"], install):
        print("$ " + " ".join(cmd), flush=True)
        if subprocess.call(cmd, env=env) != 0:
            print(f"`{' '.join(cmd)}` failed: {purpose} will be skipped.", flush=True)
            return None
    return find()


def names_paths(extra: Sequence[str]) -> bool:
    """Whether the extra args name test paths (tests/x.py, tests/x.py::test_y) rather than the whole suite."""
    return any(not a.startswith("-") and (REPO_DIR / a.split("::")[0]).exists() for a in extra)


def pytest_commands(python: Path, extra: Sequence[str]) -> list[list[str]]:
    """The pytest runs: all of tests/ unless the extra args already name test paths.

    --durations: the slowest tests in every CI log, to keep the suite under its 15-minute budget.
    A full run uses pytest-xdist, one worker per core (at most 2, EASEL_TEST_WORKERS overrides; 0 or 1 = none): each
    test process runs torch on one thread (tests/conftest.py) and much of the suite waits on servers, browsers and
    subprocesses, so two workers nearly halve the wall time on the 2-core machines. `loadgroup` with the groups
    tests/conftest.py assigns keeps a module (and its live server / Chromium fixtures) on one worker. tests/workers
    (Ray) then runs in one process of its own: under an xdist worker its local Ray workers did not receive the
    checkpoints the tests expect (not understood yet; it passes as a plain run)."""
    workers = int(os.environ.get("EASEL_TEST_WORKERS", min(2, os.cpu_count() or 1)))
    full = not names_paths(extra)
    base = [str(python), "-m", "pytest", "-q", "-rs", "--durations=40"]
    if full and workers > 1:
        return [
            [*base, "-n", str(workers), "--dist", "loadgroup", "tests", "--ignore=tests/workers", *extra],
            [*base, "tests/workers", *extra],
        ]
    return [[*base, *(["tests"] if full else []), *extra]]


def main(argv: Sequence[str] | None = None) -> int:
    extra = list(sys.argv[1:] if argv is None else argv)
    try:
        python = prepare_python()
    except bootstrap.BootstrapError as e:
        print(f"run_tests.py: setup failed: {e}", file=sys.stderr)
        return 1
    chromium = ensure_chromium()
    ensure_postgres()
    env = {**os.environ, **TEST_ENV}
    env.pop(bootstrap.REEXEC_ENV, None)
    if chromium:
        env["EASEL_CHROMIUM"] = str(chromium)  # the browser tests launch this, never a downloaded one
    lint_rc = 0 if names_paths(extra) else lint(python, env)
    type_rc = 0 if names_paths(extra) else typecheck(python, env)
    rc, skipped = 0, []
    with tempfile.TemporaryDirectory() as tmp:
        for i, cmd in enumerate(pytest_commands(python, extra)):
            report = Path(tmp) / f"junit{i}.xml"
            print("$ " + " ".join(cmd), flush=True)
            code = subprocess.call([*cmd, f"--junitxml={report}"], cwd=REPO_DIR, env=env)
            code = 1 if code == 5 else code  # 5: no tests collected, which must not pass CI
            rc = rc or code
            skipped += skip_reasons(report)
    bad = unexpected_skips(skipped, machine_facts(python, env, chromium) if skipped else {})
    if lint_rc:
        print("ruff check failed (see above): the run fails even though the tests ran.", flush=True)
    if type_rc:
        print("mypy failed (see above): the run fails even though the tests ran.", flush=True)
    if bad:
        print(
            f"{len(bad)} test(s) skipped that this machine can run (or for a reason not known to depend on the "
            "machine: tools/run_tests.py SKIP_REASONS):",
            flush=True,
        )
        for test, reason in bad:
            print(f"  {test}: {reason}", flush=True)
    return rc or lint_rc or type_rc or (1 if bad else 0)


def lint(python: Path, env: dict) -> int:
    """`ruff check` then `ruff format --check` over the whole repo (rules and format in ruff.toml), on every full run;
    the tests still run when either fails."""
    rc = 0
    for cmd in ([str(python), "-m", "ruff", "check", "."], [str(python), "-m", "ruff", "format", "--check", "."]):
        print("$ " + " ".join(cmd), flush=True)
        rc = subprocess.call(cmd, cwd=REPO_DIR, env=env) or rc
    return rc


def typecheck(python: Path, env: dict) -> int:
    """`mypy` over webui/ (settings in mypy.ini: stricter on the services than on the UI glue)."""
    cmd = [str(python), "-m", "mypy"]
    print("$ " + " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=REPO_DIR, env=env)


def skip_reasons(report: Path) -> list[tuple[str, str]]:
    """(test id, reason) of every skipped test in a pytest junit-xml report (none when there is no report)."""
    if not report.is_file():
        return []
    out = []
    for case in ET.parse(report).getroot().iter("testcase"):
        skip = case.find("skipped")
        if skip is not None and skip.get("type") != "pytest.xfail":
            test = "::".join(p for p in (case.get("classname", ""), case.get("name", "")) if p)
            out.append((test, skip.get("message", "")))
    return out


def machine_facts(python: Path, env: dict, chromium: Path | None) -> dict:
    """What SKIP_REASONS asks about this machine and the venv."""
    facts: dict = {
        "chromium": chromium is not None,
        "demo": DEMO_MODEL.is_file(),
        "node": shutil.which("node") is not None,
        "postgres": find_postgres() is not None,
    }
    try:
        out = subprocess.run(
            [str(python), "-c", PROBE], cwd=REPO_DIR, env=env, capture_output=True, text=True, timeout=300, check=True
        ).stdout
        facts.update(json.loads(out.strip().splitlines()[-1]))
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as e:
        print(f"run_tests.py: could not ask the venv what it has ({e}); every skip counts as unexpected", flush=True)
    return facts


def unexpected_skips(skipped: list[tuple[str, str]], facts: Mapping) -> list[tuple[str, str]]:
    """The skips not explained by SKIP_REASONS on this machine (a fact the probe could not tell counts as present)."""
    bad = []
    for test, reason in skipped:
        rule = next((holds for pattern, holds in SKIP_REASONS if re.search(pattern, reason, re.IGNORECASE)), None)
        try:
            explained = rule is not None and bool(rule(facts))
        except KeyError:
            explained = False
        if not explained:
            bad.append((test, reason))
    return bad


if __name__ == "__main__":
    sys.exit(main())
