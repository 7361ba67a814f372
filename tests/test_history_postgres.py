"""The job history in PostgreSQL (`--database-url`, webui/history_pg.py, #22) against a real server: a private
cluster of Debian's PostgreSQL started on loopback for this module. The same behaviour tests run on SQLite, so
the two backends can't drift apart; a second head on another data dir picks up the first one's waiting job."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("psycopg", reason="pip install -r requirements-ray.txt")


def _bindir() -> Path | None:
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(d, "initdb").exists():
            return Path(d)
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres():
    bindir = _bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found (Debian: apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="easel-pg-"))
    os.chmod(root, 0o755)
    data, sock, port = root / "data", root / "sock", _free_port()
    sock.mkdir()
    prefix: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: its own user, as Debian's package sets it up
        import pwd

        pw = pwd.getpwnam("postgres")
        for p in (root, sock):
            os.chown(p, pw.pw_uid, pw.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    run = dict(check=True, capture_output=True, text=True, timeout=120)
    subprocess.run(
        prefix
        + [str(bindir / "initdb"), "-D", str(data), "-U", "easel", "--auth=trust", "-E", "UTF8", "--no-instructions"],
        **run,
    )
    ctl = prefix + [str(bindir / "pg_ctl"), "-D", str(data)]
    subprocess.run(
        ctl
        + [
            "-o",
            f"-c listen_addresses=127.0.0.1 -p {port} -k {sock} -c fsync=off",
            "-l",
            str(root / "log"),
            "-w",
            "start",
        ],
        **run,
    )
    url = f"postgresql://easel@127.0.0.1:{port}/postgres"

    def restart() -> None:  # a failover, a maintenance restart (-l: the server must not hold our pipe)
        subprocess.run(ctl + ["-l", str(root / "log"), "-m", "fast", "-w", "restart"], **run)

    try:
        yield SimpleNamespace(url=url, restart=restart)
    finally:
        subprocess.run(ctl + ["-m", "immediate", "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgres"])
def history(request, tmp_path):
    from webui.history import open_history

    if request.param == "sqlite":
        h = open_history(None, tmp_path / "easel.db")
    else:
        url = request.getfixturevalue("postgres").url
        h = open_history(url, tmp_path / "unused.db")
        h._write("DELETE FROM jobs", ())  # one server for the module: each test starts empty
    yield h
    h.close()


def test_a_job_s_life_reads_back_the_same_on_both_databases(history):
    t0 = 1765090000.123456  # a timestamp keeps its microseconds (PostgreSQL's REAL would round it)
    history.queued("j1", "txt2img", {"prompt": "a cat 50%_off", "seed": 1}, t0, request={"body": {"x": 1}})
    history.queued("j2", "txt2img", {"prompt": "a dog"}, t0 + 1)
    assert [r["id"] for r in history.waiting()] == ["j1", "j2"]
    assert history.waiting()[0]["request"] == {"body": {"x": 1}}
    history.started("j1", t0 + 2, worker="w1")
    history.retried("j1", 1, "worker w1 died")
    history.retried("j1", 2, 'worker w2 died: it\'s "gone"')
    history.started("j1", t0 + 3, worker="w3")
    history.finished("j1", "done", {"paths": ["a.png"]}, None, t0 + 4)
    row = history.get("j1")
    assert row["status"] == "done" and row["retries"] == 2 and row["worker"] == "w3"
    assert row["retry_log"] == ["worker w1 died", 'worker w2 died: it\'s "gone"']
    assert row["created_at"] == t0 and row["finished_at"] == t0 + 4 and row["result"] == {"paths": ["a.png"]}
    assert "request" not in row and row["params"] == {"prompt": "a cat 50%_off", "seed": 1}
    assert [r["id"] for r in history.list(search="50%_")] == ["j1"]  # LIKE wildcards in a search are literal
    assert history.list(search="%") == [] or [r["id"] for r in history.list(search="%")] == ["j1"]
    assert [r["id"] for r in history.list()] == ["j2", "j1"]
    assert [r["id"] for r in history.list(status="queued")] == ["j2"]
    history.queued("j1", "txt2img", {"prompt": "again"}, t0)  # re-queued under its id (a restart)
    assert history.get("j1")["status"] == "queued" and history.get("j1")["finished_at"] is None
    history.started("j2", t0 + 5)
    assert history.mark_running_interrupted() == 1 and history.get("j2")["status"] == "interrupted"
    assert history.get("nope") is None


def test_a_restarted_server_is_reconnected(postgres, tmp_path):
    from webui.history import open_history

    h = open_history(postgres.url, tmp_path / "x.db")
    h.queued("before", "txt2img", {}, time.time())
    postgres.restart()
    h.queued("after", "txt2img", {}, time.time())  # the broken connection is opened again
    assert h.get("before") and h.get("after")
    h.close()


def test_an_unreachable_database_is_a_503_that_hides_the_password(tmp_path):
    from webui.errors import EaselError
    from webui.history import open_history

    with pytest.raises(EaselError) as e:
        open_history(f"postgresql://easel:s3cret-pw@127.0.0.1:{_free_port()}/easel", tmp_path / "x.db")
    assert e.value.status == 503 and "s3cret-pw" not in e.value.message + str(e.value.detail)
    assert "127.0.0.1" in e.value.message


def test_the_flag_takes_only_sqlite_or_postgresql_urls():
    from webui.flags import parse_args, validate_args as validate

    assert validate(parse_args(["--database-url", "mysql://x"]))
    assert not validate(parse_args(["--database-url", "postgresql://u@h/db"]))
    assert not validate(parse_args(["--database-url", "sqlite:///tmp/x.db"]))


def test_a_new_head_on_another_machine_runs_the_waiting_job(postgres, tmp_path, tiny_models):
    """Head A (its own data dir) queues a job behind a long one and stops; head B, on another data dir with the same
    database, re-queues it and runs it: the history survived A's machine."""
    from fastapi.testclient import TestClient

    from webui.api.server import build_fastapi
    from webui.app import Application
    from webui.flags import parse_args

    heads = []
    for name in ("a", "b"):
        shutil.copytree(tiny_models, tmp_path / name / "models")
        heads.append(
            parse_args(
                [
                    "--data-dir",
                    str(tmp_path / name),
                    "--api",
                    "--nowebui",
                    "--threads",
                    "1",
                    "--database-url",
                    postgres.url,
                ]
            )
        )
    first = Application(heads[0])
    first.catalog.demo_dir = None
    first.history._write("DELETE FROM jobs", ())  # one server for the module: what other tests left goes
    first.start(wait_for_model=True)
    gate = threading.Event()
    first.jobs.submit("hold", {}, lambda j: gate.wait(30), record=False)
    with TestClient(build_fastapi(first)) as c:
        r = c.post(
            "/easel/v1/jobs",
            json={
                "kind": "txt2img",
                "params": {"prompt": "moved heads", "seed": 5, "steps": 2, "width": 64, "height": 64},
            },
        )
        assert r.status_code in (200, 202), r.text
        job_id = r.json()["id"]
    first.jobs.stop(timeout=0)
    gate.set()
    first.stop()
    assert not (tmp_path / "a" / "easel.db").exists()  # nothing went to SQLite
    second = Application(heads[1])
    second.catalog.demo_dir = None
    try:
        second.start(wait_for_model=True)
        deadline = time.time() + 120
        while (row := second.history.get(job_id))["status"] in ("queued", "running") and time.time() < deadline:
            time.sleep(0.1)
        assert row["status"] == "done", row
        images = row["result"]["images"]  # written by head B, into its own outputs
        assert images and all(p.startswith(str(tmp_path / "b" / "outputs")) and Path(p).is_file() for p in images)
    finally:
        second.stop()
