"""Create the repo's .venv and keep its requirements installed. Shared by launch.py and tools/run_tests.py.

Standard library only: this runs under the bare system `python3`, before anything is installed. An install is
skipped when a SHA-256 of the requirement files matches the stamp written after the last successful install.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NoReturn, Sequence

REPO_DIR = Path(__file__).resolve().parent.parent
VENV_OK_ENV = "EASEL_VENV_OK"  # "1": run in the current interpreter, no venv and no installs (you manage it)
REEXEC_ENV = "EASEL_REEXECUTED"  # set before re-executing, to stop a loop if the venv python is not what it seems

Runner = Callable[[Sequence[str]], int]


class BootstrapError(RuntimeError):
    """Setup failed; the message says what to do."""


@dataclass(frozen=True)
class RequirementSet:
    """Requirement files installed in order; `no_deps` files get `pip install --no-deps`."""

    stamp: str  # file name, inside the venv, that records the hash of the last successful install
    files: tuple[tuple[str, bool], ...]  # (path relative to the repo, no_deps)

    def paths(self, repo: Path) -> list[Path]:
        return [repo / name for name, _ in self.files]

    def pip_args(self, repo: Path) -> list[list[str]]:
        return [(["--no-deps"] if no_deps else []) + ["-r", str(repo / name)] for name, no_deps in self.files]


RUNTIME = RequirementSet(".easel-requirements.sha256", (("requirements.txt", False), ("requirements-nodeps.txt", True)))
TEST = RequirementSet(".easel-test-requirements.sha256", (("requirements-test.txt", False),))
# Optional: Ray, for `--workers ray` (launch.py installs it only then; tools/run_tests.py always, so CI tests it)
RAY = RequirementSet(".easel-ray-requirements.sha256", (("requirements-ray.txt", False),))
# OpenVINO's CPU kernels: `cpu_attention` Automatic and `cpu_backend: openvino` (installed --no-deps; launch.py
# installs it as best effort, a failure only warns; tools/run_tests.py always installs it)
OPENVINO = RequirementSet(".easel-openvino-requirements.sha256", (("requirements-openvino.txt", True),))


# ---------------------------------------------------------------- where things are


def venv_dir(repo: Path = REPO_DIR) -> Path:
    return repo / ".venv"


def _bin(venv: Path) -> Path:
    return venv / ("Scripts" if os.name == "nt" else "bin")


def venv_python(venv: Path) -> Path:
    return _bin(venv) / ("python.exe" if os.name == "nt" else "python")


def in_venv(venv: Path) -> bool:
    """True when this interpreter runs inside `venv` (its sys.prefix is the venv folder)."""
    return Path(sys.prefix).resolve() == venv.resolve()


def venv_ok_override() -> bool:
    return os.environ.get(VENV_OK_ENV, "") == "1"


def venv_ready(venv: Path) -> bool:
    """The venv has a python and pip (Debian without python3-venv leaves a venv with no pip)."""
    pip = _bin(venv) / ("pip.exe" if os.name == "nt" else "pip")
    return venv_python(venv).exists() and pip.exists()


# ---------------------------------------------------------------- requirement hashes


def requirements_hash(files: Sequence[Path]) -> str:
    """SHA-256 over each file's name and bytes; a missing file hashes differently from an empty one."""
    h = hashlib.sha256()
    for path in files:
        h.update(path.name.encode() + b"\0")
        h.update(path.read_bytes() if path.exists() else b"<missing>")
        h.update(b"\0")
    return h.hexdigest()


def read_stamp(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def write_stamp(path: Path, digest: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(digest + "\n", encoding="utf-8")
    os.replace(tmp, path)  # atomic: an interrupted write never leaves a half stamp


def is_installed(venv: Path, reqs: RequirementSet, repo: Path = REPO_DIR) -> bool:
    return read_stamp(venv / reqs.stamp) == requirements_hash(reqs.paths(repo))


def _run(cmd: Sequence[str]) -> int:
    print("$ " + " ".join(cmd), flush=True)
    return subprocess.call(list(cmd))


def ensure_requirements(
    python: Path, venv: Path, reqs: RequirementSet, repo: Path = REPO_DIR, run: Runner = _run
) -> bool:
    """Install `reqs` with `python -m pip` unless the stamp matches. Returns True when it installed."""
    if is_installed(venv, reqs, repo):
        return False
    missing = [str(p) for p in reqs.paths(repo) if not p.exists()]
    if missing:
        raise BootstrapError(f"missing requirement file(s): {', '.join(missing)}")
    digest = requirements_hash(reqs.paths(repo))  # hashed before installing: a later edit triggers a reinstall
    print(f"Installing requirements ({', '.join(n for n, _ in reqs.files)}) into {venv} ...", flush=True)
    for args in reqs.pip_args(repo):
        rc = run([str(python), "-m", "pip", "install", *args])
        if rc != 0:
            raise BootstrapError(f"pip install {' '.join(args)} failed (exit code {rc}); see the output above")
    write_stamp(venv / reqs.stamp, digest)
    return True


# ---------------------------------------------------------------- creating the venv


def venv_support_hint() -> str | None:
    """What to install when this python cannot create venvs (Debian/Ubuntu split venv and ensurepip out)."""
    if importlib.util.find_spec("venv") and importlib.util.find_spec("ensurepip"):
        return None
    pkg = f"python3.{sys.version_info.minor}-venv"
    return (
        f"{sys.executable} cannot create a virtual environment (the 'venv'/'ensurepip' modules are missing).\n"
        f"On Debian/Ubuntu run:  sudo apt-get install -y {pkg}   (or python3-venv), then run this again."
    )


def ensure_venv(venv: Path, run: Runner = _run) -> Path:
    """Create `venv` with the current python if it is missing or broken; return its python."""
    if venv_ready(venv):
        return venv_python(venv)
    hint = venv_support_hint()
    if hint:
        raise BootstrapError(hint)
    print(f"Creating the virtual environment {venv} ...", flush=True)
    rc = run([sys.executable, "-m", "venv", str(venv)])
    if rc != 0 or not venv_ready(venv):
        raise BootstrapError(
            f"'{sys.executable} -m venv {venv}' failed (exit code {rc}). On Debian/Ubuntu, "
            f"install python3.{sys.version_info.minor}-venv and run this again."
        )
    return venv_python(venv)


def reexec(python: Path, script: Path, argv: Sequence[str]) -> NoReturn:
    """Replace this process with `python script argv...` (same pid, same console)."""
    if os.environ.get(REEXEC_ENV) == "1":
        raise BootstrapError(
            f"re-executed with {python} but still not inside the venv (sys.prefix={sys.prefix}); "
            f"delete {python.parent.parent} and run again, or set {VENV_OK_ENV}=1"
        )
    os.environ[REEXEC_ENV] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(str(python), [str(python), str(script), *argv])
