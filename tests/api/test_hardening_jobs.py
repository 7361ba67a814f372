"""Issue #16, the queue's part: cancel means cancel (mid-step), a time estimate before a job runs, the selected
checkpoint known from the first answer, queued jobs surviving a crash, a full disk said plainly, and SIGTERM."""

from __future__ import annotations

import errno
import os
import time

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import wait_until

FLAGS = ("--nowebui", "--api")


def _client(application) -> TestClient:
    from webui.api.server import build_fastapi

    return TestClient(build_fastapi(application), base_url="http://127.0.0.1")


def _job(c: TestClient, job_id: str) -> dict:
    return c.get(f"/easel/v1/jobs/{job_id}").json()


# ---------------------------------------------------------------- item 18: a full disk says so


def test_a_full_history_database_is_a_clear_507_and_the_history_recovers(make_app):
    app = make_app(*FLAGS)
    db = app.history._db
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    with _client(app) as c:
        # fill the database: no room for a new row
        db.execute(f"PRAGMA max_page_count={pages}")
        r = None
        for i in range(50):  # each job row takes some room; the first refused one is what we check
            r = c.post(
                "/easel/v1/jobs", json={"kind": "txt2img", "params": {"prompt": "x" * 2000 + str(i), "steps": 1}}
            )
            if r.status_code != 202:
                break
        assert r.status_code == 507, r.text
        body = r.json()
        assert body["error"] == "DiskFull" and "disk full" in body["detail"]
        assert str(app.paths.data_dir) in body["detail"]
        assert "rollback" not in r.text
        db.execute("PRAGMA max_page_count=1073741823")  # space again: the same connection keeps working
        wait_until(lambda: app.jobs.current is None and not app.jobs.queued(), 60)
        r = c.post("/easel/v1/jobs", json={"kind": "txt2img", "params": {"prompt": "after", "steps": 1}})
        assert r.status_code == 202, r.text
        done = wait_until(
            lambda: (lambda j: j if j["status"] in ("done", "failed") else None)(_job(c, r.json()["id"])), 60
        )
        assert done["status"] == "done"


def test_a_full_disk_while_saving_an_image_is_a_clear_507(make_app, monkeypatch):
    import webui.fsutil

    app = make_app(*FLAGS)
    real = os.replace

    def full(src, dst, *a, **k):
        if str(dst).endswith(".png"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst, *a, **k)

    with _client(app) as c:
        monkeypatch.setattr(webui.fsutil.os, "replace", full)
        r = c.post("/sdapi/v1/txt2img", json={"prompt": "full", "steps": 1, "save_images": True})
        assert r.status_code == 507, r.text
        assert r.json()["error"] == "DiskFull" and r.json()["detail"].startswith("disk full: free space in ")
        monkeypatch.setattr(webui.fsutil.os, "replace", real)
        r = c.post("/sdapi/v1/txt2img", json={"prompt": "room again", "steps": 1, "save_images": True})
        assert r.status_code == 200, r.text
        failed = c.get("/easel/v1/jobs", params={"status": "failed"}).json()["jobs"]
        assert failed and "disk full" in failed[0]["error"]


# ---------------------------------------------------------------- item 4: cancel means cancel


class SlowBlocks:
    """Test-only: every listed block sleeps before it runs, so one UNet step (or VAE decode) takes seconds."""

    def __init__(self, blocks, seconds: float):
        import threading

        self.calls = 0
        self.entered = threading.Event()

        def slow(module, args):
            self.calls += 1
            self.entered.set()
            time.sleep(seconds)

        self.handles = [b.register_forward_pre_hook(slow) for b in blocks]

    def remove(self):
        for h in self.handles:
            h.remove()


def _wait_status(c, job_id, statuses, timeout=60):
    return wait_until(lambda: (lambda j: j if j["status"] in statuses else None)(_job(c, job_id)), timeout, 0.02)


def test_interrupt_stops_a_job_in_the_middle_of_a_unet_step(make_app):
    app = make_app(*FLAGS)
    unet = app.models.active.pipeline.unet
    slow = SlowBlocks([*unet.down_blocks, unet.mid_block, *unet.up_blocks], 1.0)  # ≥ 5 s per step
    try:
        with _client(app) as c:
            r = c.post("/easel/v1/jobs", json={"kind": "txt2img", "params": {"prompt": "slow", "steps": 50}})
            job_id = r.json()["id"]
            assert slow.entered.wait(60)
            time.sleep(1.2)  # inside the first step, a block or two in
            assert app.jobs.get(job_id).control.sampling_step == 0
            t0 = time.time()
            assert c.post("/sdapi/v1/interrupt").status_code == 200
            view = _wait_status(c, job_id, ("interrupted", "done", "failed"), 30)
            took = time.time() - t0
            assert view["status"] == "interrupted", view
            assert took < 4.5, f"interrupt took {took:.1f} s"  # a step here is ≥ 5 s; slow.calls proves mid-step
            assert slow.calls < 5  # it never got to the end of the step
            # the hooks were for that job only: the next job runs unhooked by us and completes
            slow.remove()
            r = c.post("/sdapi/v1/txt2img", json={"prompt": "after", "steps": 2})
            assert r.status_code == 200 and len(r.json()["images"]) == 1
            assert not any(m._forward_pre_hooks for m in unet.modules())
    finally:
        slow.remove()


def test_interrupt_stops_the_vae_decode_between_blocks(make_app):
    app = make_app(*FLAGS)
    vae = app.models.active.pipeline.vae
    slow = SlowBlocks(list(vae.decoder.up_blocks), 1.0)
    try:
        with _client(app) as c:
            r = c.post("/easel/v1/jobs", json={"kind": "txt2img", "params": {"prompt": "slow decode", "steps": 1}})
            job_id = r.json()["id"]
            assert slow.entered.wait(60)
            t0 = time.time()
            c.post("/sdapi/v1/interrupt")
            view = _wait_status(c, job_id, ("interrupted", "done", "failed"), 30)
            assert (
                view["status"] == "interrupted" and time.time() - t0 < 5
            )  # one 1 s block, then the check; a busy 2-core CI box
            assert slow.calls < len(vae.decoder.up_blocks)
    finally:
        slow.remove()


# ---------------------------------------------------------------- item 15: what an interrupted job keeps


def test_interrupt_returns_the_partial_image_as_a1111(make_app):
    import base64
    import io
    import threading

    from PIL import Image

    app = make_app(*FLAGS)
    unet = app.models.active.pipeline.unet
    slow = SlowBlocks([unet.mid_block], 0.05)
    out = {}
    try:
        with _client(app) as c:
            t = threading.Thread(
                target=lambda: out.update(
                    r=c.post("/sdapi/v1/txt2img", json={"prompt": "partial", "steps": 150, "seed": 3})
                )
            )
            t.start()
            wait_until(lambda: app.jobs.current and app.jobs.current.control.sampling_step >= 3, 60)
            c.post("/sdapi/v1/interrupt")
            t.join(30)
        r = out["r"]
        assert r.status_code == 200, r.text
        images = r.json()["images"]
        assert len(images) == 1  # the current latents, decoded
        image = Image.open(io.BytesIO(base64.b64decode(images[0])))
        assert image.size == (app.models.active.native_size,) * 2
    finally:
        slow.remove()


def test_an_interrupted_job_keeps_the_images_it_finished(make_app):
    app = make_app(*FLAGS)
    unet = app.models.active.pipeline.unet
    slow = SlowBlocks([unet.mid_block], 0.05)
    try:
        with _client(app) as c:
            r = c.post(
                "/easel/v1/jobs",
                json={"kind": "txt2img", "params": {"prompt": "two of three", "steps": 20, "n_iter": 3, "seed": 5}},
            )
            job_id = r.json()["id"]
            wait_until(
                lambda: (lambda j: j and j.control.job_no == 1 and j.control.sampling_step >= 2)(app.jobs.current),
                60,
                0.01,
            )
            c.post(f"/easel/v1/jobs/{job_id}/cancel")
            view = _wait_status(c, job_id, ("interrupted", "done", "failed"))
            assert view["status"] == "interrupted"
            saved = view["result"]["images"]
            assert len(saved) == 1 and os.path.isfile(saved[0])  # batch 1 done; the partial one isn't saved
    finally:
        slow.remove()
    app.stop()
    again = make_app(*FLAGS)  # and after a restart, from the history
    with _client(again) as c:
        assert _job(c, job_id)["result"]["images"] == saved


# ---------------------------------------------------------------- item 14: selected checkpoint from the first answer


def test_the_selected_checkpoint_is_known_before_the_initial_load_ends(make_app, data_dir):
    import threading

    from tests.training.conftest import make_dataset

    ckpt_dir = data_dir / "models" / "Stable-diffusion"
    (ckpt_dir / "aaa-corrupt.safetensors").write_bytes(b"\0" * 64)  # the first file in the folder
    app = make_app(*FLAGS, "--ckpt", str(ckpt_dir / "sub" / "tiny-b.safetensors"), start=False)
    release = threading.Event()
    real_load = app.models.load

    def slow_load(query=None, *a, **k):
        release.wait(60)
        return real_load(query, *a, **k)

    app.models.load = slow_load
    try:
        app.start()
        with _client(app) as c:
            opts = c.get("/sdapi/v1/options").json()
            assert opts["sd_model_checkpoint"] == app.catalog.find("tiny-b").title
            body = {
                "name": "early",
                "dataset_dir": str(make_dataset(data_dir / "ds")),
                "steps": 1,
                "batch_size": 1,
                "resolution": 64,
            }
            r = c.post("/easel/v1/train/lora", json=body)  # no checkpoint: the selected one, not aaa-corrupt
            assert r.status_code == 202, r.text
            job_id = r.json()["job_id"]
            assert app.jobs.get(job_id).status == "queued"  # behind the initial load, in the queue
            app.jobs.cancel(job_id)
    finally:
        release.set()
    wait_until(lambda: app.models.active is not None, 60)
    assert app.models.active.info.name.endswith("tiny-b.safetensors")


# ---------------------------------------------------------------- item 15: queued jobs survive kill -9

_CHILD_QUEUE = """
import sys, time
from webui.app import Application
from webui.flags import parse_args
from webui.generation.requests import Img2ImgRequest, Txt2ImgRequest
from tests.api.conftest import png_base64

app = Application(parse_args(["--data-dir", sys.argv[1], "--nowebui"]))
app.catalog.demo_dir = None
app.start(wait_for_model=True)
unet = app.models.active.pipeline.unet
unet.mid_block.register_forward_pre_hook(lambda m, a: time.sleep(0.2))  # a long first job
running = app.submit_txt2img(Txt2ImgRequest(prompt="running at the kill", steps=150, seed=1), from_api=True)
waiting = app.submit_txt2img(Txt2ImgRequest(prompt="waiting at the kill", steps=2, seed=2, styles=[]), from_api=True)
img = app.submit_img2img(Img2ImgRequest(prompt="img2img waiting", steps=2, seed=3, denoising_strength=0.5,
                                        init_images=[png_base64((64, 64))]), from_api=True)
while running.control.sampling_step < 1:
    time.sleep(0.02)
print("IDS", running.id, waiting.id, img.id, flush=True)
time.sleep(600)
"""


def _child_server(code: str, data_dir, *args: str):
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo), "HF_HUB_OFFLINE": "1", "EASEL_VENV_OK": "1"}
    log = open(data_dir / "child-stderr.txt", "w")
    cmd = [sys.executable, "-c", code, str(data_dir)] if code else [sys.executable, str(repo / "launch.py"), *args]
    return subprocess.Popen(cmd, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=log, text=True)


def _read_line(child, prefix: str, data_dir, timeout: float = 180) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = child.stdout.readline()
        if line.startswith(prefix):
            return line
        if not line and child.poll() is not None:
            break
    raise AssertionError(f"no {prefix!r} line: {(data_dir / 'child-stderr.txt').read_text()[-3000:]}")


def test_jobs_queued_at_kill_9_run_at_the_next_start(make_app, data_dir):
    import signal

    from webui.history import JobHistory

    child = _child_server(_CHILD_QUEUE, data_dir)
    try:
        running, waiting, img = _read_line(child, "IDS", data_dir).split()[1:]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    raw = JobHistory(data_dir / "easel.db")
    stored = {row["id"]: row for row in raw.waiting()}
    raw.close()
    assert set(stored) == {waiting, img}
    assert stored[waiting]["request"]["body"]["prompt"] == "waiting at the kill"  # complete, re-runnable
    assert stored[img]["request"]["body"]["init_images"][0]  # the input image too

    app = make_app(*FLAGS)
    with _client(app) as c:
        assert _job(c, running)["status"] == "interrupted"
        for job_id in (waiting, img):
            view = _wait_status(c, job_id, ("done", "failed", "interrupted"), 120)
            assert view["status"] == "done", view
            assert view["result"]["images"] and all(os.path.isfile(p) for p in view["result"]["images"])
        assert _job(c, waiting)["params"]["prompt"] == "waiting at the kill"


# ---------------------------------------------------------------- item 19: SIGTERM while a job runs


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_sigterm_interrupts_the_running_job_keeps_the_queue_and_exits_fast(make_app, data_dir, signame):
    import signal
    import threading

    import requests

    from tests.conftest import free_port
    from webui.history import JobHistory

    port = free_port()
    child = _child_server(
        "", data_dir, "--skip-install", "--nowebui", "--api", "--data-dir", str(data_dir), "--port", str(port)
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _read_line(child, "Easel", data_dir)
        wait_until(lambda: _get(url + "/sdapi/v1/options"), 120, 0.2)
        wait_until(lambda: (_get(url + "/sdapi/v1/progress") or {}).get("state", {}).get("job_count") == 0, 120, 0.2)
        out = {}
        long = {"prompt": "long", "steps": 150, "width": 512, "height": 512, "seed": 1}
        t = threading.Thread(target=lambda: out.update(r=_post(url + "/sdapi/v1/txt2img", long)), daemon=True)
        t.start()
        wait_until(
            lambda: (_get(url + "/sdapi/v1/progress") or {}).get("state", {}).get("sampling_step", 0) >= 1, 120, 0.1
        )
        queued = requests.post(
            url + "/easel/v1/jobs", json={"kind": "txt2img", "params": {"prompt": "next time", "steps": 2}}
        ).json()["id"]
        running = _get(url + "/sdapi/v1/progress")["state"]["job"]
        t0 = time.time()
        child.send_signal(getattr(signal, signame))
        child.wait(15)
        took = time.time() - t0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
    assert took < 10, f"the server took {took:.1f} s to stop"
    raw = JobHistory(data_dir / "easel.db")
    assert raw.get(running)["status"] == "interrupted"  # written by the server itself, before it exited
    assert raw.get(queued)["status"] == "queued"
    raw.close()
    app = make_app(*FLAGS)
    with _client(app) as c:
        assert _wait_status(c, queued, ("done", "failed", "interrupted"), 120)["status"] == "done"


def _get(url):
    import requests

    try:
        r = requests.get(url, timeout=5)
        return r.json() if r.status_code == 200 else None
    except requests.RequestException:
        return None


def _post(url, body):
    import requests

    try:
        return requests.post(url, json=body, timeout=60)
    except requests.RequestException as e:
        return e


# ---------------------------------------------------------------- item 4: how long, before it starts


def test_a_job_says_how_long_it_will_take_from_measured_steps(make_app):
    from webui.ui.progress import progress_line

    app = make_app(*FLAGS)
    unet = app.models.active.pipeline.unet
    slow = SlowBlocks([unet.mid_block], 0.25)  # ~0.25 s per step, whatever the machine
    try:
        with _client(app) as c:
            first = c.post("/easel/v1/jobs", json={"kind": "txt2img", "params": {"prompt": "a", "steps": 6}}).json()
            assert _job(c, first["id"])["estimate_seconds"] is None  # nothing measured yet: no guess
            _wait_status(c, first["id"], ("done",))
            job = c.post("/easel/v1/jobs", json={"kind": "txt2img", "params": {"prompt": "b", "steps": 20}}).json()
            estimate = _job(c, job["id"])["estimate_seconds"]
            assert 20 * 0.25 * 0.8 < estimate < 20 * 0.25 * 3, estimate
            done = _wait_status(c, job["id"], ("done",))
            took = done["finished_at"] - done["started_at"]
            assert estimate * 0.5 < took < estimate * 2, (estimate, took)

            # over warn_job_seconds the UI's progress line warns, while the job waits and before it runs
            assert c.post("/sdapi/v1/options", json={"warn_job_seconds": 3}).status_code == 200
            blocker = c.post("/easel/v1/jobs", json={"kind": "txt2img", "params": {"prompt": "c", "steps": 30}}).json()
            long = c.post("/easel/v1/jobs", json={"kind": "txt2img", "params": {"prompt": "d", "steps": 40}}).json()
            text, _, _ = progress_line(app.jobs, app.jobs.get(long["id"]))
            assert text.startswith("Queued: position") and "Long job: about" in text and "on this device" in text
            # /sdapi/v1/progress: a sane ETA from the first moment (the estimate, before any step has ended)
            wait_until(lambda: app.jobs.current and app.jobs.current.id == blocker["id"], 30, 0.01)
            p = c.get("/sdapi/v1/progress").json()
            assert p["eta_relative"] > 0 and "on this device" in (p["textinfo"] or "")
            c.post(f"/easel/v1/jobs/{long['id']}/cancel")
            c.post(f"/easel/v1/jobs/{blocker['id']}/cancel")
    finally:
        slow.remove()
