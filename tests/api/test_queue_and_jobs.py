"""One queue for everyone: 20+ concurrent clients are all answered in FIFO order, and Easel's async jobs API
(submit, poll, list, cancel) works on the same queue and history."""

from __future__ import annotations

import threading
from collections import deque
from pathlib import Path

import pytest
import requests

from tests.api.conftest import wait_idle, wait_until

CLIENTS = 22


@pytest.fixture
def server(api_server):
    wait_idle(api_server.app)
    yield api_server
    wait_idle(api_server.app)


class RecordingDeque(deque):
    """The queue's deque, recording the order jobs really entered it (append runs under the queue's lock)."""

    def __init__(self, items, log: list[str]):
        super().__init__(items)
        self.log = log

    def append(self, job) -> None:
        self.log.append(job.id)
        super().append(job)


def test_concurrent_clients_are_all_answered_in_fifo_order(server):
    jobs = server.app.jobs
    enqueued: list[str] = []
    original = jobs._queue
    jobs._queue = RecordingDeque(original, enqueued)
    barrier = threading.Barrier(CLIENTS)
    answers: dict[int, requests.Response] = {}
    errors: list[BaseException] = []

    def client(i: int) -> None:
        try:
            barrier.wait(10)
            answers[i] = requests.post(
                f"{server.url}/sdapi/v1/txt2img",
                timeout=300,
                json={"prompt": f"fifo client {i}", "steps": 1, "seed": 1000 + i, "width": 64, "height": 64},
            )
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
    finally:
        jobs._queue = deque(jobs._queue)
    assert not errors, errors
    assert sorted(answers) == list(range(CLIENTS)), "a request was lost"
    for i, r in answers.items():
        assert r.status_code == 200, r.text[:300]
        info = r.json()
        assert len(info["images"]) == 1
        assert '"all_seeds": [%d]' % (1000 + i) in info["info"], "a client got someone else's image"
    rows = {r["id"]: r for r in server.app.history.list(search="fifo client", limit=1000)}
    assert len(rows) == CLIENTS and {r["status"] for r in rows.values()} == {"done"}
    in_queue_order = [rows[job_id] for job_id in enqueued if job_id in rows]
    assert len(in_queue_order) == CLIENTS
    starts = [r["started_at"] for r in in_queue_order]
    assert starts == sorted(starts), "jobs did not start in the order they were queued"
    for earlier, later in zip(in_queue_order, in_queue_order[1:]):
        assert earlier["finished_at"] <= later["started_at"], "two jobs ran on the device at once"
    assert max(r["created_at"] for r in rows.values()) < in_queue_order[-2]["finished_at"], "not concurrent"


def test_sequential_submissions_start_in_created_order(server):
    ids = [
        requests.post(
            f"{server.url}/easel/v1/jobs",
            timeout=10,
            json={
                "kind": "txt2img",
                "params": {"prompt": f"order {i}", "steps": 1, "seed": i, "width": 64, "height": 64},
            },
        ).json()["id"]
        for i in range(6)
    ]
    wait_idle(server.app)
    rows = [server.app.history.get(i) for i in ids]
    assert [r["status"] for r in rows] == ["done"] * 6
    created = [r["created_at"] for r in rows]
    started = [r["started_at"] for r in rows]
    assert created == sorted(created) and started == sorted(started)


def _job(server, job_id: str) -> dict:
    r = requests.get(f"{server.url}/easel/v1/jobs/{job_id}", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def test_async_job_lifecycle(server):
    r = requests.post(
        f"{server.url}/easel/v1/jobs",
        timeout=10,
        json={"kind": "txt2img", "params": {"prompt": "async job", "steps": 2, "seed": 42, "width": 64, "height": 64}},
    )
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    assert r.json()["status"] in ("queued", "running")
    done = wait_until(lambda: (lambda j: j if j["status"] in ("done", "failed") else None)(_job(server, job_id)), 60)
    assert done["status"] == "done", done["error"]
    assert done["kind"] == "txt2img" and done["progress"] == 1.0 and done["error"] is None
    assert done["params"]["prompt"] == "async job" and done["params"]["seed"] == 42
    assert done["created_at"] <= done["started_at"] <= done["finished_at"] and done["position"] is None
    images = done["result"]["images"]
    assert len(images) == 1 and Path(images[0]).is_file() and images[0].endswith(".png")
    assert done["result"]["infotexts"][0].startswith("async job\n")
    listed = requests.get(f"{server.url}/easel/v1/jobs", params={"status": "done", "limit": 5}, timeout=10).json()
    assert job_id in [j["id"] for j in listed["jobs"]] and all(j["status"] == "done" for j in listed["jobs"])
    assert len(requests.get(f"{server.url}/easel/v1/jobs", params={"limit": 1}, timeout=10).json()["jobs"]) == 1
    # finished jobs are answered from the history (SQLite) once the queue has forgotten them
    server.app.jobs._jobs.pop(job_id, None)
    assert _job(server, job_id)["result"]["images"] == images


def test_cancel_a_queued_job_and_interrupt_a_running_one(server):
    def post(params):
        return requests.post(
            f"{server.url}/easel/v1/jobs",
            timeout=10,
            json={"kind": "txt2img", "params": {"width": 64, "height": 64, **params}},
        )

    long_id = post({"prompt": "long async", "steps": 1000}).json()["id"]
    queued = post({"prompt": "queued async", "steps": 2}).json()
    assert queued["status"] == "queued" and queued["position"] >= 1
    wait_until(lambda: _job(server, long_id)["status"] == "running")
    r = requests.post(f"{server.url}/easel/v1/jobs/{queued['id']}/cancel", timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "cancelled" and r.json()["position"] is None
    assert server.app.history.get(queued["id"])["status"] == "cancelled"
    r = requests.post(f"{server.url}/easel/v1/jobs/{long_id}/cancel", timeout=10)
    assert r.status_code == 200
    ended = wait_until(lambda: (lambda j: j if j["status"] != "running" else None)(_job(server, long_id)), 10)
    assert ended["status"] == "interrupted"
    # cancelling again changes nothing; unknown ids are 404 with A1111's error body
    assert requests.post(f"{server.url}/easel/v1/jobs/{queued['id']}/cancel").json()["status"] == "cancelled"
    missing = requests.get(f"{server.url}/easel/v1/jobs/nope", timeout=10)
    assert missing.status_code == 404 and set(missing.json()) == {"error", "detail", "body", "errors"}
    assert requests.post(f"{server.url}/easel/v1/jobs/nope/cancel", timeout=10).status_code == 404


@pytest.mark.parametrize(
    "body, field",
    [
        ({"kind": "txt2img", "params": {"steps": "many"}}, "params.steps"),
        ({"kind": "txt2img", "params": {"cfg_scale": -3}}, "params.cfg_scale"),
        ({"kind": "paint", "params": {}}, "kind"),
    ],
)
def test_async_validation_names_the_field(server, body, field):
    r = requests.post(f"{server.url}/easel/v1/jobs", json=body, timeout=10)
    assert r.status_code == 422 and field in r.json()["detail"], r.text


def test_async_img2img_or_honest_501(server):
    from tests.api.conftest import png_base64

    r = requests.post(
        f"{server.url}/easel/v1/jobs",
        timeout=10,
        json={
            "kind": "img2img",
            "params": {"init_images": [png_base64((64, 64))], "steps": 2, "denoising_strength": 0.5},
        },
    )
    if not hasattr(server.app, "submit_img2img"):
        assert r.status_code == 501 and "img2img is not implemented yet" in r.json()["detail"]
        return
    assert r.status_code == 202, r.text
    job = wait_until(
        lambda: (lambda j: j if j["status"] not in ("queued", "running") else None)(_job(server, r.json()["id"])), 60
    )
    assert job["status"] == "done" and Path(job["result"]["images"][0]).is_file()
