"""History in SQLite survives a restart and a kill -9: finished jobs keep their output paths, and a job that was
running when the process died shows `interrupted` (through the async jobs API too)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from fastapi.testclient import TestClient

from tests.api.conftest import wait_until

REPO = Path(__file__).resolve().parents[2]


def _client(app) -> TestClient:
    from webui.api.server import build_fastapi

    return TestClient(build_fastapi(app), base_url="http://127.0.0.1")


def test_history_survives_a_restart(make_app):
    from webui.generation.requests import Txt2ImgRequest

    first = make_app("--nowebui")
    with _client(first) as c:
        r = c.post("/easel/v1/jobs", json={"kind": "txt2img", "params": {"prompt": "kept", "steps": 1, "seed": 8}})
        job_id = r.json()["id"]
        done = wait_until(
            lambda: (lambda j: j if j["status"] == "done" else None)(c.get(f"/easel/v1/jobs/{job_id}").json()), 60
        )
    sync = first.submit_txt2img(Txt2ImgRequest(prompt="kept too", steps=1, seed=9), from_api=True)
    first.jobs.wait(sync)
    first.stop()

    second = make_app("--nowebui")
    with _client(second) as c:
        again = c.get(f"/easel/v1/jobs/{job_id}").json()
        assert again["status"] == "done" and again["result"] == done["result"]
        assert all(Path(p).is_file() for p in again["result"]["images"])
        listed = c.get("/easel/v1/jobs", params={"status": "done"}).json()["jobs"]
        assert {job_id, sync.id} <= {j["id"] for j in listed}
        assert c.get("/easel/v1/jobs", params={"search": "kept too"}).json()["jobs"][0]["id"] == sync.id


_CHILD = textwrap.dedent("""
    import sys, time
    from webui.app import Application
    from webui.flags import parse_args
    from webui.generation.requests import Txt2ImgRequest

    app = Application(parse_args(["--data-dir", sys.argv[1], "--nowebui"]))
    app.catalog.demo_dir = None
    app.start(wait_for_model=True)
    job = app.submit_txt2img(Txt2ImgRequest(prompt="killed mid-job", steps=1000, seed=1), from_api=True)
    while job.control.sampling_step < 1:
        time.sleep(0.02)
    print("RUNNING", job.id, flush=True)
    time.sleep(600)
""")


def test_a_job_running_at_kill_9_shows_interrupted(make_app, data_dir, tmp_path_factory):
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    log = tmp_path_factory.mktemp("child") / "stderr.txt"
    with open(log, "w") as err:
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(data_dir)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    try:
        deadline = time.time() + 120
        line = ""
        while time.time() < deadline and not line.startswith("RUNNING"):
            line = child.stdout.readline()
            if not line and child.poll() is not None:
                raise AssertionError(f"child exited with {child.returncode}: {log.read_text()[-2000:]}")
        assert line.startswith("RUNNING"), "the child never started its job"
        job_id = line.split()[1]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    assert child.returncode == -signal.SIGKILL

    from webui.history import JobHistory

    raw = JobHistory(data_dir / "easel.db")
    assert raw.get(job_id)["status"] == "running"  # what the killed process left behind
    raw.close()
    app = make_app("--nowebui")
    row = app.history.get(job_id)
    assert row["status"] == "interrupted" and row["error"]
    with _client(app) as c:
        view = c.get(f"/easel/v1/jobs/{job_id}").json()
        assert view["status"] == "interrupted" and view["params"]["prompt"] == "killed mid-job"
        assert job_id in [j["id"] for j in c.get("/easel/v1/jobs", params={"status": "interrupted"}).json()["jobs"]]
