"""Workers on Ray (#22), end to end over HTTP: one head (`--workers ray --ray-num-workers 3`) on a private local Ray
runtime, shared by the tests of this module in order (Ray and three workers take about a minute to start on 2 cores).

Each test can fail: the affinity test counts checkpoint file reads per worker, the pixel test compares with the
local worker, the kill test SIGKILLs the process of the worker running the job."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

pytest.importorskip("ray", reason="pip install -r requirements-ray.txt")

from tests.api.conftest import wait_until  # noqa: E402
from tests.conftest import LiveServer, app_flags  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CKPTS = ("tiny-a", "sub/tiny-b")


@pytest.fixture(scope="module")
def head(tmp_path_factory, tiny_models):
    from webui.app import Application
    from webui.flags import parse_args

    data_dir = tmp_path_factory.mktemp("ray-head")
    shutil.copytree(tiny_models, data_dir / "models")
    # the workers keep their own models (empty at start): each checkpoint reaches them from the head by sha256
    own = tmp_path_factory.mktemp("ray-worker-data")
    application = Application(
        parse_args(
            app_flags(
                data_dir,
                "--api",
                "--nowebui",
                "--workers",
                "ray",
                "--ray-num-workers",
                "3",
                "--threads",
                "1",
                "--ray-max-retries",
                "1",
                "--ray-worker-data-dir",
                str(own),
            )
        )
    )
    application.catalog.demo_dir = None
    application.start(wait_for_model=True)
    server = LiveServer(application).__enter__()
    try:
        wait_until(lambda: len(_workers(server, "idle")) == 3, 420, 0.5)  # ~1 min on an idle 2-core machine
        yield server
    finally:
        server.__exit__(None, None, None)
        application.stop()


def _workers(server, state: str | None = None) -> list[dict]:
    body = requests.get(f"{server.url}/easel/v1/workers", timeout=10).json()
    assert body["mode"] == "ray"
    return [w for w in body["workers"] if state is None or w["state"] == state]


def _txt2img(url: str, seed: int, ckpt: str, steps: int = 3, **extra) -> dict:
    body = {
        "prompt": f"a red circle {seed}",
        "seed": seed,
        "steps": steps,
        "width": 64,
        "height": 64,
        "override_settings": {"sd_model_checkpoint": ckpt},
        **extra,
    }
    r = requests.post(f"{url}/sdapi/v1/txt2img", json=body, timeout=300)
    assert r.status_code == 200, r.text
    return r.json()


def _pixels(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))


def _job(server, job_id: str) -> dict:
    return requests.get(f"{server.url}/easel/v1/jobs/{job_id}", timeout=10).json()


def test_affinity_each_worker_reads_its_checkpoint_once(head):
    """Two checkpoints alternating, a RAM cache of one: each checkpoint stays on the worker that loaded it."""
    assert requests.post(f"{head.url}/sdapi/v1/options", json={"sd_checkpoints_limit": 1}, timeout=30).ok
    for i in range(6):
        _txt2img(head.url, 100 + i, CKPTS[i % 2], steps=2)
    workers = _workers(head)
    assert sorted(w["file_loads"] for w in workers) == [0, 1, 1], workers  # the third is never needed
    loaded = sorted(w["loaded_models"] for w in workers if w["loaded_models"])
    assert len(loaded) == 2 and all(len(m) == 1 for m in loaded) and loaded[0] != loaded[1], loaded
    assert sum(w["jobs_done"] for w in workers) == 6
    system = requests.get(f"{head.url}/easel/v1/system", timeout=30).json()["workers"]
    assert system["mode"] == "ray" and {w["id"] for w in system["workers"]} == {w["id"] for w in workers}


def test_checkpoints_reached_the_workers_own_folder_once_by_sha256(head):
    """After the affinity test: each worker received exactly the checkpoint it ran, once, byte for byte."""
    own = Path(head.app.ns.ray_worker_data_dir) / "models" / "Stable-diffusion"
    received = sorted(tuple(w["files_received"]) for w in _workers(head))
    assert received == sorted(
        [(), ("Stable-diffusion/tiny-a.safetensors",), ("Stable-diffusion/sub/tiny-b.safetensors",)]
    ), received
    for rel in ("tiny-a.safetensors", "sub/tiny-b.safetensors"):
        head_copy = head.app.paths.ckpt_dir / rel
        assert (own / rel).read_bytes() == head_copy.read_bytes()
    assert not list(own.rglob("*.part"))


def test_concurrent_jobs_complete_with_the_local_workers_pixels(head, make_app):
    """The issue's full size: 3 workers, 30 jobs from 10 concurrent clients, none lost, history complete."""
    jobs = [(200 + i, CKPTS[i % 2]) for i in range(30)]
    answers: dict[int, dict] = {}

    def client(mine):
        for seed, ckpt in mine:
            answers[seed] = _txt2img(head.url, seed, ckpt)

    threads = [threading.Thread(target=client, args=(jobs[k::10],)) for k in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert sorted(answers) == [s for s, _ in jobs]
    rows = head.app.history.list(limit=100)
    ran = {r["params"]["seed"]: r for r in rows if r["kind"] == "txt2img" and r["params"]["seed"] >= 200}
    assert all(r["status"] == "done" and r["worker"] for r in ran.values()) and len(ran) == 30
    assert len({r["worker"] for r in ran.values()}) == 3  # every worker took jobs
    # the same requests on the local worker (no Ray): same seed, same pixels
    from fastapi.testclient import TestClient

    from webui.api.server import build_fastapi

    local = make_app("--api", "--nowebui", "--threads", "1")
    assert local.workers is None
    with TestClient(build_fastapi(local)) as c:
        for seed, ckpt in jobs[:4]:
            body = {
                "prompt": f"a red circle {seed}",
                "seed": seed,
                "steps": 3,
                "width": 64,
                "height": 64,
                "override_settings": {"sd_model_checkpoint": ckpt},
            }
            mine = c.post("/sdapi/v1/txt2img", json=body).json()
            assert np.array_equal(_pixels(mine["images"][0]), _pixels(answers[seed]["images"][0])), seed
            assert json.loads(mine["info"])["infotexts"] == json.loads(answers[seed]["info"])["infotexts"]


def test_progress_and_interrupt_of_a_job_on_a_worker(head):
    r = requests.post(
        f"{head.url}/easel/v1/jobs",
        timeout=10,
        json={
            "kind": "txt2img",
            "params": {
                "prompt": "long",
                "steps": 1000,
                "width": 64,
                "height": 64,
                "n_iter": 2,
                "override_settings": {"sd_model_checkpoint": CKPTS[0]},
            },
        },
    )
    job_id = r.json()["id"]
    seen = wait_until(
        lambda: (lambda j: j if j["status"] == "running" and j["progress"] > 0.01 else None)(_job(head, job_id)), 60
    )  # the worker's step count reaches the head
    assert seen["worker"] in {w["id"] for w in _workers(head)}
    # the live preview is decoded on the worker when a client asks, as locally
    progress = wait_until(
        lambda: (lambda p: p if p["current_image"] else None)(
            requests.get(f"{head.url}/sdapi/v1/progress", timeout=30).json()
        ),
        60,
        0.5,
    )
    preview = Image.open(io.BytesIO(base64.b64decode(progress["current_image"])))
    assert preview.size == (64, 64) and progress["state"]["sampling_step"] >= 5
    # Skip ends the first batch on the worker; the job goes on with the second
    assert progress["state"]["job_no"] == 0
    assert requests.post(f"{head.url}/sdapi/v1/skip", timeout=10).status_code == 200
    wait_until(
        lambda: requests.get(f"{head.url}/sdapi/v1/progress", timeout=30).json()["state"]["job_no"] == 1, 3, 0.05
    )  # the local skip's bound; the rest of a 1000-step batch takes far longer
    t0 = time.time()
    assert requests.post(f"{head.url}/sdapi/v1/interrupt", timeout=10).status_code == 200
    ended = wait_until(lambda: (lambda j: j if j["status"] != "running" else None)(_job(head, job_id)), 30)
    took = time.time() - t0
    assert ended["status"] == "interrupted" and ended["progress"] < 1.0, ended
    assert took < 3.0, f"interrupt took {took:.1f} s"  # the local worker's bound (tests/api/test_hardening_jobs)


def test_a_killed_worker_s_job_completes_on_another_with_one_retry(head):
    before = {w["id"]: w for w in _workers(head)}
    answer: dict = {}
    t = threading.Thread(target=lambda: answer.update(_txt2img(head.url, 4242, CKPTS[1], steps=400)))
    t.start()
    busy = wait_until(lambda: [w for w in _workers(head, "busy") if w["job"]], 60)[0]
    time.sleep(0.5)  # in the middle of the job
    os.kill(busy["pid"], signal.SIGKILL)
    t.join(240)
    assert answer and len(answer["images"]) == 1  # the client's request still got its image
    row = head.app.history.get(busy["job"])
    assert row["status"] == "done" and row["retries"] == 1 and len(row["retry_log"]) == 1, row
    assert str(busy["pid"]) in row["retry_log"][0] and row["worker"] != busy["id"]
    assert busy["id"] not in {w["id"] for w in _workers(head)} and len(before) == 3
    view = _job(head, busy["job"])
    assert view["retries"] == 1 and view["status"] == "done"
    # the History tab: the job's worker and its retry, and the Workers table (the live workers, not the dead one)
    from webui.ui.history_tab import COLUMNS, WORKER_COLUMNS, HistoryTab

    listing = HistoryTab.load(type("Tab", (), {"app": head.app})(), "")
    rows, ids, workers = listing[1], listing[2], listing[-1]
    assert dict(zip(COLUMNS, rows[ids.index(busy["job"])]))["Worker"] == f"{row['worker']} (retried 1×)"
    shown = {dict(zip(WORKER_COLUMNS, w))["Worker"] for w in workers}
    assert shown == {w["id"] for w in _workers(head)} and busy["id"] not in shown


def test_a_new_worker_takes_queued_work_and_a_drained_one_leaves(head):
    old = _workers(head)[0]

    def submit(i: int, what: str = "queued") -> str:
        return requests.post(
            f"{head.url}/easel/v1/jobs",
            timeout=10,
            json={
                "kind": "txt2img",
                "params": {"prompt": f"{what} {i}", "seed": i, "steps": 200, "width": 64, "height": 64},
            },
        ).json()["id"]

    ids = [submit(i) for i in range(4)]
    r = requests.post(f"{head.url}/easel/v1/workers", timeout=60)
    assert r.status_code == 202
    new = r.json()["id"]

    def took_one() -> bool:  # keeps two jobs waiting until the new worker is up, however fast this machine runs them
        if any(w["id"] == new and w["jobs_done"] >= 1 for w in _workers(head)):
            return True
        if sum(_job(head, i)["status"] == "queued" for i in ids) < 2:
            ids.append(submit(len(ids)))
        return False

    wait_until(took_one, 180, 0.5)
    # one more job than there are workers, so the old worker has one to be busy with at the drain however fast this
    # machine ran the rest
    late = range(len(ids), len(ids) + 1 + len(_workers(head)))
    ids += [
        requests.post(
            f"{head.url}/easel/v1/jobs",
            timeout=10,
            json={
                "kind": "txt2img",
                "params": {"prompt": f"late {i}", "seed": i, "steps": 200, "width": 64, "height": 64},
            },
        ).json()["id"]
        for i in late
    ]
    busy_old = wait_until(lambda: [w for w in _workers(head) if w["id"] == old["id"] and w["job"]], 120, 0.1)[0]
    d = requests.post(f"{head.url}/easel/v1/workers/{old['id']}/drain", timeout=10)
    assert d.status_code == 200 and d.json()["state"] == "draining"
    wait_until(lambda: old["id"] not in {w["id"] for w in _workers(head)}, 60)
    assert head.app.history.get(busy_old["job"])["status"] == "done"  # it finished its job, then left
    wait_until(lambda: all(_job(head, i)["status"] == "done" for i in ids), 180, 0.5)
    assert requests.post(f"{head.url}/easel/v1/workers/nope/drain", timeout=10).status_code == 404


def test_a_training_run_on_a_worker_resumes_from_its_last_save_on_another(head):
    """A train-lora job runs on a worker with its own folders; its saves reach the head as they are made; the worker
    is killed after a save; the next worker gets the head's resume state and continues from it."""
    from tests.training.conftest import make_dataset

    dataset = make_dataset(head.app.paths.data_dir / "training" / "datasets" / "squares")
    if len(_workers(head)) < 2:  # after the drain test one is left: one more to take over
        assert requests.post(f"{head.url}/easel/v1/workers", timeout=60).status_code == 202
    wait_until(lambda: len(_workers(head, "idle")) == 2, 180, 0.5)
    body = {
        "name": "remote squares",
        "dataset_dir": str(dataset),
        "checkpoint": CKPTS[0],
        "steps": 60,
        "save_every": 4,
        "rank": 4,
        "resolution": 64,
        "seed": 7,
    }
    r = requests.post(f"{head.url}/easel/v1/train/lora", json=body, timeout=30)
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    state = head.app.paths.data_dir / "training" / "remote squares" / "state.safetensors"
    wait_until(lambda: state.is_file(), 180, 0.1)  # the worker's first save, on the head's storage
    runner = _job(head, job_id)["worker"]
    pid = next(w["pid"] for w in _workers(head) if w["id"] == runner)
    os.kill(pid, signal.SIGKILL)
    view = wait_until(
        lambda: (lambda v: v if v["status"] in ("done", "failed") else None)(
            requests.get(f"{head.url}/easel/v1/train/lora/{job_id}", timeout=10).json()
        ),
        240,
        0.5,
    )
    assert view["status"] == "done" and view["step"] == 60 and len(view["losses"]) == 60, view
    output = head.app.paths.lora_dir / "remote squares.safetensors"
    assert view["result"]["path"] == str(output) and output.is_file()
    assert not state.exists()  # a completed run's resume state is removed, on the head too
    job = head.app.jobs.get(job_id)
    assert job.training.resumed_from >= 4, job.training.to_dict()  # continued from a save, not from step 0
    row = head.app.history.get(job_id)
    assert row["retries"] == 1 and row["worker"] != runner, row
    names = [x["name"] for x in requests.get(f"{head.url}/sdapi/v1/loras", timeout=10).json()]
    assert "remote squares" in names


def test_a_job_whose_workers_keep_dying_fails_after_the_retries(head):
    """--ray-max-retries 1: the job's worker is killed, then the worker it was re-queued on: it fails with the
    reason (WorkerLost, 503 to the waiting client) instead of waiting forever or running a third time."""
    if len(_workers(head)) < 2:  # the training test killed one
        assert requests.post(f"{head.url}/easel/v1/workers", timeout=60).status_code == 202
    wait_until(lambda: len(_workers(head, "idle")) >= 2, 180, 0.5)
    answer: dict = {}

    def client():
        body = {"prompt": "doomed", "seed": 9, "steps": 400, "width": 64, "height": 64}
        r = requests.post(f"{head.url}/sdapi/v1/txt2img", json=body, timeout=300)
        answer.update(status=r.status_code, body=r.json())

    t = threading.Thread(target=client)
    t.start()
    killed = []
    for _ in range(2):
        busy = wait_until(lambda: [w for w in _workers(head, "busy") if w["job"] and w["id"] not in killed], 120, 0.1)[
            0
        ]
        time.sleep(0.3)
        os.kill(busy["pid"], signal.SIGKILL)
        killed.append(busy["id"])
    t.join(120)
    assert answer["status"] == 503 and "died during the job" in answer["body"]["error"] + answer["body"].get(
        "detail", ""
    ), answer
    row = head.app.history.get(busy["job"])
    assert row["status"] == "failed" and row["retries"] == 1 and "not retried again" in row["error"], row


def test_workers_local_does_not_import_ray(tmp_path, tiny_models):
    shutil.copytree(tiny_models, tmp_path / "models")
    code = (
        "import sys\nfrom fastapi.testclient import TestClient\nfrom webui.app import Application\n"
        "from webui.api.server import build_fastapi\nfrom webui.flags import parse_args\n"
        f"app = Application(parse_args(['--data-dir', {str(tmp_path)!r}, '--api', '--nowebui', "
        "'--workers', 'local']))\napp.catalog.demo_dir = None\napp.start(wait_for_model=True)\n"
        "with TestClient(build_fastapi(app)) as c:\n"
        "    assert c.get('/easel/v1/workers').json() == {'mode': 'local', 'workers': []}\n"
        "    assert c.get('/easel/v1/system').json()['workers'] == {'mode': 'local', 'workers': []}\n"
        "    r = c.post('/sdapi/v1/txt2img', json={'prompt': 'x', 'steps': 2, 'width': 64, 'height': 64})\n"
        "    assert r.status_code == 200, r.text\n"
        "    assert c.post('/easel/v1/workers').status_code == 422\n"
        "app.stop()\nprint('ray' in sys.modules, 'webui.workers.pool' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "False False"
