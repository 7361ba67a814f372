"""launch.py, webui/bootstrap.py and tools/run_tests.py, without really creating venvs or installing anything."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import types
from pathlib import Path
from types import ModuleType

import pytest

from webui import bootstrap

REPO = Path(__file__).resolve().parent.parent


def load(relpath: str, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO / relpath)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


launch = load("launch.py", "easel_launch")
run_tests = load("tools/run_tests.py", "easel_run_tests")


def run_launch(*argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("COMMANDLINE_ARGS", bootstrap.REEXEC_ENV)}
    return subprocess.run(
        [sys.executable, str(REPO / "launch.py"), *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **env},
        cwd=REPO,
    )


# ---------------------------------------------------------------- launch.py as a user runs it


def test_listen_without_auth_refuses_to_start() -> None:
    r = run_launch("--skip-install", "--exit", "--listen")
    assert r.returncode == 2, r.stderr
    assert "--gradio-auth" in r.stderr and "Refusing" in r.stderr


def test_exit_after_setup() -> None:
    r = run_launch("--skip-install", "--exit", EASEL_VENV_OK="1")
    assert r.returncode == 0, r.stderr
    assert "Setup complete" in r.stdout


def test_insecure_no_auth_starts_with_a_loud_warning() -> None:
    r = run_launch("--skip-install", "--exit", "--listen", "--insecure-no-auth", EASEL_VENV_OK="1")
    assert r.returncode == 0, r.stderr
    assert "WARNING" in r.stderr


def test_bad_flags_exit_2_before_any_setup() -> None:
    assert run_launch("--no-such-flag").returncode == 2
    r = run_launch("--gradio-auth", "nocolon", "--exit")
    assert r.returncode == 2 and "--gradio-auth" in r.stderr
    r = run_launch("--exit", COMMANDLINE_ARGS="--share")  # A1111's env var is honoured
    assert r.returncode == 2 and "--share" in r.stderr


# ---------------------------------------------------------------- launch.main in-process


@pytest.fixture
def fake_app(monkeypatch: pytest.MonkeyPatch) -> list:
    calls: list = []
    module = types.ModuleType("webui.app")
    module.main = lambda ns: calls.append((ns, {k: os.environ.get(k) for k in launch.OFFLINE_ENV}))  # type: ignore
    monkeypatch.setitem(sys.modules, "webui.app", module)
    import webui

    monkeypatch.setattr(webui, "app", module, raising=False)
    for key in launch.OFFLINE_ENV:
        monkeypatch.delenv(key, raising=False)  # restored after the test
    monkeypatch.delenv("COMMANDLINE_ARGS", raising=False)
    monkeypatch.setenv(bootstrap.VENV_OK_ENV, "1")
    return calls


def test_main_sets_offline_env_and_calls_app_main(fake_app: list) -> None:
    assert launch.main(["--skip-install", "--port", "7999", "--api"]) == 0
    ((ns, env),) = fake_app
    assert ns.port == 7999 and ns.api is True
    assert env == launch.OFFLINE_ENV


def test_main_installs_inside_the_venv(fake_app: list, monkeypatch: pytest.MonkeyPatch) -> None:
    installs: list = []
    monkeypatch.setattr(bootstrap, "in_venv", lambda venv: True)
    monkeypatch.setattr(bootstrap, "ensure_requirements", lambda *a, **k: installs.append(a))
    assert launch.main(["--exit"]) == 0
    assert [i[2] for i in installs] == [bootstrap.RUNTIME, bootstrap.OPENVINO] and fake_app == []
    assert launch.main(["--exit", "--skip-install"]) == 0 and len(installs) == 2


def test_a_failed_openvino_install_only_warns(fake_app: list, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    def install(python, venv, reqs, repo):
        if reqs is bootstrap.OPENVINO:
            raise bootstrap.BootstrapError("no wheel for this platform")

    monkeypatch.setattr(bootstrap, "in_venv", lambda venv: True)
    monkeypatch.setattr(bootstrap, "ensure_requirements", install)
    assert launch.main(["--exit"]) == 0
    assert "OpenVINO not installed (no wheel for this platform)" in capsys.readouterr().err


def test_main_reports_setup_failure(fake_app: list, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_a, **_k):
        raise bootstrap.BootstrapError("pip exploded")

    monkeypatch.setattr(bootstrap, "in_venv", lambda venv: True)
    monkeypatch.setattr(bootstrap, "ensure_requirements", fail)
    assert launch.main(["--exit"]) == 1


def test_outside_the_venv_it_creates_it_and_reexecs(fake_app: list, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list = []

    class Reexec(Exception):
        pass

    def fake_reexec(python, script, argv):
        seen.append((python, script, list(argv)))
        raise Reexec

    monkeypatch.delenv(bootstrap.VENV_OK_ENV)
    monkeypatch.setattr(bootstrap, "in_venv", lambda venv: False)
    monkeypatch.setattr(bootstrap, "ensure_venv", lambda venv: Path("/v/bin/python"))
    monkeypatch.setattr(bootstrap, "reexec", fake_reexec)
    with pytest.raises(Reexec):
        launch.main(["--port", "8001", "--exit"])
    assert seen == [(Path("/v/bin/python"), REPO / "launch.py", ["--port", "8001", "--exit"])]


# ---------------------------------------------------------------- bootstrap: hashes and installs


def write_reqs(repo: Path) -> None:
    (repo / "requirements.txt").write_text("torch==2.13.0\n")
    (repo / "requirements-nodeps.txt").write_text("clip-anytorch==2.6.0\n")


def test_requirements_hash_tracks_content(tmp_path: Path) -> None:
    write_reqs(tmp_path)
    files = bootstrap.RUNTIME.paths(tmp_path)
    first = bootstrap.requirements_hash(files)
    assert bootstrap.requirements_hash(files) == first
    (tmp_path / "requirements-nodeps.txt").write_text("clip-anytorch==2.7.0\n")
    assert bootstrap.requirements_hash(files) != first
    (tmp_path / "requirements-nodeps.txt").unlink()
    assert bootstrap.requirements_hash(files) != first


def test_ensure_requirements_installs_once_per_change(tmp_path: Path) -> None:
    repo, venv = tmp_path, tmp_path / ".venv"
    venv.mkdir()
    write_reqs(repo)
    cmds: list[list[str]] = []
    run = lambda cmd: cmds.append(list(cmd)) or 0  # noqa: E731
    py = venv / "bin" / "python"
    assert bootstrap.ensure_requirements(py, venv, bootstrap.RUNTIME, repo, run=run) is True
    assert cmds == [
        [str(py), "-m", "pip", "install", "-r", str(repo / "requirements.txt")],
        [str(py), "-m", "pip", "install", "--no-deps", "-r", str(repo / "requirements-nodeps.txt")],
    ]
    stamp = venv / ".easel-requirements.sha256"
    assert bootstrap.read_stamp(stamp) == bootstrap.requirements_hash(bootstrap.RUNTIME.paths(repo))
    assert bootstrap.ensure_requirements(py, venv, bootstrap.RUNTIME, repo, run=run) is False and len(cmds) == 2
    (repo / "requirements.txt").write_text("torch==2.13.0\nnumpy\n")
    assert bootstrap.ensure_requirements(py, venv, bootstrap.RUNTIME, repo, run=run) is True and len(cmds) == 4
    (repo / "requirements-test.txt").write_text("pytest\n")  # the test set has its own stamp
    assert bootstrap.ensure_requirements(py, venv, bootstrap.TEST, repo, run=run) is True
    assert (venv / ".easel-test-requirements.sha256").exists() and bootstrap.is_installed(venv, bootstrap.RUNTIME, repo)


def test_the_test_command_installs_openvino_without_its_dependencies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """requirements-openvino.txt (cpu_backend: openvino) goes in with --no-deps, hash-cached in its own stamp, and
    tools/run_tests.py installs it (so CI runs its tests); launch.py's default install does not."""
    repo, venv = tmp_path, tmp_path / ".venv"
    venv.mkdir()
    (repo / "requirements-openvino.txt").write_text("openvino==2026.4.1\n")
    cmds: list[list[str]] = []
    py = venv / "bin" / "python"
    run = lambda cmd: cmds.append(list(cmd)) or 0  # noqa: E731
    assert bootstrap.ensure_requirements(py, venv, bootstrap.OPENVINO, repo, run=run) is True
    assert cmds == [[str(py), "-m", "pip", "install", "--no-deps", "-r", str(repo / "requirements-openvino.txt")]]
    assert bootstrap.ensure_requirements(py, venv, bootstrap.OPENVINO, repo, run=run) is False and len(cmds) == 1
    assert (venv / ".easel-openvino-requirements.sha256").exists()
    assert "openvino" not in (REPO / "requirements.txt").read_text().lower()
    pins = [line for line in (REPO / "requirements-openvino.txt").read_text().splitlines() if line[:1].isalnum()]
    assert pins and not any(line.startswith(("optimum", "torch")) for line in pins)
    sets: list = []
    monkeypatch.delenv(bootstrap.VENV_OK_ENV, raising=False)
    monkeypatch.setattr(bootstrap, "ensure_venv", lambda venv: py)
    monkeypatch.setattr(bootstrap, "ensure_requirements", lambda *a, **k: sets.append(a[2]))
    run_tests.prepare_python()
    assert bootstrap.OPENVINO in sets and bootstrap.RUNTIME in sets


def test_failed_install_writes_no_stamp(tmp_path: Path) -> None:
    venv = tmp_path / ".venv"
    venv.mkdir()
    write_reqs(tmp_path)
    with pytest.raises(bootstrap.BootstrapError, match="failed"):
        bootstrap.ensure_requirements(venv / "python", venv, bootstrap.RUNTIME, tmp_path, run=lambda cmd: 1)
    assert not (venv / bootstrap.RUNTIME.stamp).exists()
    (tmp_path / "requirements.txt").unlink()
    with pytest.raises(bootstrap.BootstrapError, match="missing requirement"):
        bootstrap.ensure_requirements(venv / "python", venv, bootstrap.RUNTIME, tmp_path, run=lambda cmd: 0)


def test_in_venv_compares_sys_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "prefix", str(tmp_path / ".venv"))
    assert bootstrap.in_venv(tmp_path / ".venv") and not bootstrap.in_venv(tmp_path / "other")


def test_ensure_venv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    venv = tmp_path / ".venv"

    def fake_venv(cmd):  # what `python -m venv` leaves behind
        assert cmd[1:3] == ["-m", "venv"]
        for exe in ("python", "pip"):
            (bootstrap._bin(venv) / exe).parent.mkdir(parents=True, exist_ok=True)
            (bootstrap._bin(venv) / exe).touch()
        return 0

    assert bootstrap.ensure_venv(venv, run=fake_venv) == bootstrap.venv_python(venv)
    assert bootstrap.ensure_venv(venv, run=lambda cmd: pytest.fail("recreated")) == bootstrap.venv_python(venv)
    # Debian without python3-venv: a clear apt hint instead of a traceback.
    monkeypatch.setattr(bootstrap, "venv_support_hint", lambda: "sudo apt-get install -y python3.11-venv")
    with pytest.raises(bootstrap.BootstrapError, match="apt-get install"):
        bootstrap.ensure_venv(tmp_path / "other", run=fake_venv)


def test_reexec_passes_argv_and_refuses_to_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list = []
    monkeypatch.setattr(os, "execv", lambda exe, args: calls.append((exe, args)))
    monkeypatch.delenv(bootstrap.REEXEC_ENV, raising=False)
    bootstrap.reexec(Path("/v/bin/python"), Path("/r/launch.py"), ["--api"])
    assert calls == [("/v/bin/python", ["/v/bin/python", "/r/launch.py", "--api"])]
    with pytest.raises(bootstrap.BootstrapError, match="still not inside"):
        bootstrap.reexec(Path("/v/bin/python"), Path("/r/launch.py"), [])  # REEXEC_ENV is now set


# ---------------------------------------------------------------- tools/run_tests.py


def test_pytest_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    py = Path("/v/bin/python")
    base = [str(py), "-m", "pytest", "-q", "-rs", "--durations=40"]
    monkeypatch.setenv("EASEL_TEST_WORKERS", "2")
    assert run_tests.pytest_commands(py, []) == [
        [*base, "-n", "2", "--dist", "loadgroup", "tests", "--ignore=tests/workers"],
        [*base, "tests/workers"],  # Ray's tests in a plain process of their own
    ]
    monkeypatch.setenv("EASEL_TEST_WORKERS", "1")
    assert run_tests.pytest_commands(py, []) == [[*base, "tests"]]
    monkeypatch.delenv("EASEL_TEST_WORKERS")
    assert run_tests.pytest_commands(py, ["tests/test_flags.py"]) == [[*base, "tests/test_flags.py"]]  # one process
    monkeypatch.setenv("EASEL_TEST_WORKERS", "1")
    assert run_tests.pytest_commands(py, ["-k", "flags"])[0][-3:] == ["tests", "-k", "flags"]


@pytest.mark.parametrize("pytest_rc,expected", [(0, 0), (1, 1), (2, 2), (5, 1)])
def test_run_tests_exit_codes(pytest_rc: int, expected: int, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict = {}
    monkeypatch.setenv("EASEL_TEST_WORKERS", "2")  # both pytest runs answer pytest_rc
    monkeypatch.setattr(run_tests, "prepare_python", lambda: Path("/v/bin/python"))
    monkeypatch.setattr(run_tests, "ensure_chromium", lambda: Path("/usr/bin/chromium"))
    monkeypatch.setattr(run_tests.subprocess, "call", lambda cmd, cwd, env: seen.update(env=env) or pytest_rc)
    assert run_tests.main([]) == expected
    assert seen["env"]["HF_HUB_OFFLINE"] == "1" and seen["env"]["GRADIO_ANALYTICS_ENABLED"] == "False"
    assert seen["env"]["EASEL_CHROMIUM"] == "/usr/bin/chromium"


def test_a_lint_failure_fails_the_run_after_the_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    cmds: list = []
    monkeypatch.setattr(run_tests, "prepare_python", lambda: Path("/v/bin/python"))
    monkeypatch.setattr(run_tests, "ensure_chromium", lambda: None)
    monkeypatch.setattr(
        run_tests.subprocess, "call", lambda cmd, cwd, env: cmds.append(cmd[2]) or (1 if cmd[2] == "ruff" else 0)
    )
    monkeypatch.setenv("EASEL_TEST_WORKERS", "2")
    assert run_tests.main([]) == 1 and cmds == [
        "ruff",
        "ruff",
        "mypy",
        "pytest",
        "pytest",
    ]  # the tests ran all the same
    cmds.clear()
    assert run_tests.main(["tests/test_flags.py"]) == 0 and cmds == ["pytest"]  # named tests: no lint


def test_a_type_error_fails_the_run_after_the_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    cmds: list = []
    monkeypatch.setattr(run_tests, "prepare_python", lambda: Path("/v/bin/python"))
    monkeypatch.setattr(run_tests, "ensure_chromium", lambda: None)
    monkeypatch.setattr(
        run_tests.subprocess, "call", lambda cmd, cwd, env: cmds.append(cmd[2]) or (1 if cmd[2] == "mypy" else 0)
    )
    monkeypatch.setenv("EASEL_TEST_WORKERS", "1")
    assert run_tests.main([]) == 1 and cmds == ["ruff", "ruff", "mypy", "pytest"]


def test_a_format_failure_fails_the_run_and_the_repo_is_formatted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`ruff format --check .` runs over the whole repo; an unformatted file fails the run after the tests, as a lint
    error does, and the repo as committed passes it."""
    calls: list = []
    monkeypatch.setattr(run_tests, "prepare_python", lambda: Path("/v/bin/python"))
    monkeypatch.setattr(run_tests, "ensure_chromium", lambda: None)
    monkeypatch.setattr(
        run_tests.subprocess,
        "call",
        lambda cmd, cwd, env: calls.append(cmd[2:]) or (1 if cmd[2:4] == ["ruff", "format"] else 0),
    )
    assert run_tests.main([]) == 1
    assert calls[:2] == [["ruff", "check", "."], ["ruff", "format", "--check", "."]] and calls[-1][0] == "pytest"
    unformatted = tmp_path / "bad.py"
    unformatted.write_text("x = {  'a':1 }\n")
    ruff = [sys.executable, "-m", "ruff", "format", "--check", "--config", str(run_tests.REPO_DIR / "ruff.toml")]
    assert subprocess.run([*ruff, str(unformatted)], capture_output=True).returncode == 1
    assert subprocess.run([*ruff, "."], cwd=run_tests.REPO_DIR, capture_output=True).returncode == 0


def _junit_of(tmp_path: Path, test_source: str) -> Path:
    """A real pytest junit-xml report of a small test file (the format skip_reasons reads)."""
    (tmp_path / "test_some.py").write_text(test_source)
    report = tmp_path / "junit.xml"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(tmp_path / "test_some.py"),
            f"--junitxml={report}",
        ],
        cwd=tmp_path,
        capture_output=True,
        timeout=120,
    )
    return report


def test_skip_reasons_are_read_from_pytest_report(tmp_path: Path) -> None:
    report = _junit_of(
        tmp_path,
        """
import pytest

def test_runs():
    pass

@pytest.mark.skipif(True, reason="node is not installed")
def test_marked():
    pass

def test_inside():
    pytest.skip("needs Debian's /usr/bin/chromium")

@pytest.mark.xfail(reason="known")
def test_xfail():
    assert False
""",
    )
    found = dict(
        (test.rsplit("::", 1)[-1].rsplit(".", 1)[-1], reason) for test, reason in run_tests.skip_reasons(report)
    )
    assert found == {"test_marked": "node is not installed", "test_inside": "needs Debian's /usr/bin/chromium"}
    assert run_tests.skip_reasons(tmp_path / "missing.xml") == []


def test_a_skip_this_machine_could_run_is_unexpected() -> None:
    here = {
        "chromium": True,
        "playwright": True,
        "bf16": False,
        "prepack": False,
        "demo": True,
        "node": False,
        "scipy": True,
        "ray": True,
        "psycopg": True,
        "schemathesis": True,
        "ligsp": True,
        "postgres": True,
    }
    skipped = [
        ("a", "needs Debian's /usr/bin/chromium"),
        ("b", "this CPU has no native bf16"),
        ("c", "node is not installed"),
        ("d", "scipy is installed"),
        ("e", "scipy is not installed"),
        ("f", "the bundled demo model is missing"),
        ("g", "pip install -r requirements-ray.txt"),
        ("h", "could not import 'schemathesis': No module named 'schemathesis'"),
        ("i", "flaky on Tuesdays"),
    ]
    assert [t for t, _ in run_tests.unexpected_skips(skipped, here)] == ["a", "e", "f", "g", "h", "i"]
    elsewhere = {**here, "chromium": False, "demo": False, "ray": False, "schemathesis": False, "scipy": False}
    assert [t for t, _ in run_tests.unexpected_skips(skipped, elsewhere)] == ["d", "i"]
    assert [t for t, _ in run_tests.unexpected_skips(skipped[:1], {})] == ["a"]  # unknown facts: not explained


def test_an_unexpected_skip_fails_the_run_and_is_listed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    def fake_call(cmd, cwd, env):
        report = next((a.split("=", 1)[1] for a in cmd if a.startswith("--junitxml=")), None)
        if report:
            Path(report).write_text(
                '<testsuites><testsuite><testcase classname="tests.ui.test_x" name="test_page">'
                '<skipped type="pytest.skip" message="needs Debian\'s /usr/bin/chromium"/>'
                "</testcase></testsuite></testsuites>"
            )
        return 0

    monkeypatch.setattr(run_tests, "prepare_python", lambda: Path("/v/bin/python"))
    monkeypatch.setattr(run_tests.subprocess, "call", fake_call)
    monkeypatch.setattr(run_tests, "machine_facts", lambda python, env, chromium: {"chromium": chromium is not None})
    monkeypatch.setattr(run_tests, "ensure_chromium", lambda: Path("/usr/bin/chromium"))
    assert run_tests.main(["tests/ui/test_x.py"]) == 1
    assert "tests.ui.test_x::test_page: needs Debian's /usr/bin/chromium" in capsys.readouterr().out
    monkeypatch.setattr(run_tests, "ensure_chromium", lambda: None)  # no chromium here: the skip is honest
    assert run_tests.main(["tests/ui/test_x.py"]) == 0


def test_chromium_missing_without_root_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_tests, "find_chromium", lambda: None)
    monkeypatch.setattr(run_tests.shutil, "which", lambda name: "/usr/bin/apt-get")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(run_tests.subprocess, "call", lambda *a, **k: pytest.fail("apt-get must not run"))
    assert run_tests.ensure_chromium() is None


def test_chromium_installed_with_apt_as_root(monkeypatch: pytest.MonkeyPatch) -> None:
    cmds: list = []
    monkeypatch.setattr(run_tests, "find_chromium", lambda: Path("/usr/bin/chromium") if cmds else None)
    monkeypatch.setattr(run_tests.shutil, "which", lambda name: "/usr/bin/apt-get")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(run_tests.subprocess, "call", lambda cmd, env: cmds.append(cmd) or 0)
    assert run_tests.ensure_chromium() == Path("/usr/bin/chromium")
    assert cmds == [["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]]
