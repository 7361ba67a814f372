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
            r = c.post("/easel/v1/jobs", json={"kind": "txt2img", "params": {"prompt": "x" * 2000 + str(i),
                                                                          "steps": 1}})
            if r.status_code != 202:
                break
        assert r.status_code == 507, r.text
        body = r.json()
        assert body["error"] == "DiskFull" and "disk full" in body["detail"] and str(app.paths.data_dir) in body["detail"]
        assert "rollback" not in r.text
        db.execute("PRAGMA max_page_count=1073741823")  # space again: the same connection keeps working
        wait_until(lambda: app.jobs.current is None and not app.jobs.queued(), 60)
        r = c.post("/easel/v1/jobs", json={"kind": "txt2img", "params": {"prompt": "after", "steps": 1}})
        assert r.status_code == 202, r.text
        done = wait_until(lambda: (lambda j: j if j["status"] in ("done", "failed") else None)(_job(c, r.json()["id"])),
                          60)
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
