"""Installing a model by URL as an outside client does it, against a model server on loopback: a job with byte
progress, the model usable without a restart, resume after a dropped connection, hashes verified (given or
published), the file placed in the folder its kind belongs in."""

from __future__ import annotations

import hashlib
import threading
import time

from tests.downloads.conftest import files_in, install, wait_job
from tests.factories import write_tiny_checkpoint


def _ckpt_bytes(tmp_path, seed: int = 7) -> bytes:
    return write_tiny_checkpoint(tmp_path / f"src-{seed}.safetensors", seed=seed).read_bytes()


def test_download_with_progress_is_listed_and_generates(dl_client, dl_app, models_server, tmp_path):
    body = _ckpt_bytes(tmp_path)
    gate = threading.Event()
    url = models_server.add("/files/fresh-model.safetensors", body=body, gate=gate)
    before = {m["title"] for m in dl_client.get("/sdapi/v1/sd-models").json()}
    r = dl_client.post("/easel/v1/models/install", json={"url": url, "sha256": hashlib.sha256(body).hexdigest()})
    assert r.status_code == 202 and r.json()["status"] in ("queued", "running")
    job_id = r.json()["id"]
    deadline, view = time.time() + 60, {}
    while time.time() < deadline:  # the server holds the second half back: the job shows the bytes so far
        view = dl_client.get(f"/easel/v1/jobs/{job_id}").json()
        d = view.get("download") or {}
        if d.get("bytes_done", 0) >= len(body) // 2:
            break
        time.sleep(0.02)
    assert view["status"] == "running" and view["kind"] == "install-model", view
    assert view["download"]["bytes_total"] == len(body) and view["download"]["bytes_done"] < len(body)
    assert 0.4 < view["progress"] < 1.0 and view["download"]["filename"] == "fresh-model.safetensors"
    assert not (dl_app.paths.ckpt_dir / "fresh-model.safetensors").exists()  # only the hidden .part so far
    gate.set()
    view = wait_job(dl_client, job_id)
    assert view["status"] == "done" and view["progress"] == 1.0, view
    result = view["result"]
    assert result["name"] == "fresh-model.safetensors"
    assert result["path"] == str(dl_app.paths.ckpt_dir / "fresh-model.safetensors")
    model = result["model"]
    assert model["folder"] == "Stable-diffusion" and model["family"] == "sd1" and model["verified"] is True
    assert model["sha256"] == hashlib.sha256(body).hexdigest() and model["size"] == len(body)
    assert (dl_app.paths.ckpt_dir / "fresh-model.safetensors").read_bytes() == body
    assert not [p for p in files_in(dl_app.paths.ckpt_dir) if p.endswith((".part", ".tmp"))]
    new = [m for m in dl_client.get("/sdapi/v1/sd-models").json() if m["title"] not in before]
    assert [m["model_name"] for m in new] == ["fresh-model"] and model["title"] == new[0]["title"]
    assert new[0]["sha256"] == model["sha256"]
    r = dl_client.post(
        "/sdapi/v1/txt2img",
        json={
            "prompt": "a red square",
            "steps": 2,
            "width": 64,
            "height": 64,
            "override_settings": {"sd_model_checkpoint": new[0]["title"]},
        },
    )
    assert r.status_code == 200, r.text
    assert "Model: fresh-model" in r.json()["info"]
    row = dl_app.history.get(job_id)  # the history keeps the result after the job leaves memory
    assert row["status"] == "done" and row["result"]["model"]["folder"] == "Stable-diffusion"


def test_resume_after_a_dropped_connection(dl_client, dl_app, models_server, tmp_path):
    body = _ckpt_bytes(tmp_path)
    half = len(body) // 2
    url = models_server.add("/m/resumed.safetensors", body=body, drop_after=[half])
    view = install(dl_client, url=url, sha256=hashlib.sha256(body).hexdigest())
    assert view["status"] == "done", view
    assert [s.range for s in models_server.seen] == [None, f"bytes={half}-"]  # continued, not restarted
    assert models_server.sent == len(body)  # no byte was sent twice
    assert view["result"]["model"]["resumed_at"] == [half] and view["download"]["attempts"] == 2
    assert (dl_app.paths.ckpt_dir / "resumed.safetensors").read_bytes() == body


def test_a_kept_part_is_resumed_by_the_next_install(dl_client, dl_app, models_server, tmp_path):
    """The connection drops on every attempt: the job fails, keeps what it got, and installing the same URL again
    asks only for the rest."""
    body = _ckpt_bytes(tmp_path)
    step = len(body) // 10
    url = models_server.add("/m/flaky.safetensors", body=body, drop_after=[step] * 5)
    view = install(dl_client, url=url)
    assert view["status"] == "failed" and "kept" in view["error"] and "resumes" in view["error"], view
    parts = [p for p in files_in(dl_app.paths.ckpt_dir) if p.endswith(".part")]
    assert len(parts) == 1 and (dl_app.paths.ckpt_dir / parts[0]).stat().st_size == 5 * step
    assert "flaky" not in str(dl_client.get("/sdapi/v1/sd-models").json())  # a .part is never listed
    models_server.seen.clear()
    view = install(dl_client, url=url, sha256=hashlib.sha256(body).hexdigest())
    assert view["status"] == "done", view
    assert models_server.seen[0].range == f"bytes={5 * step}-"
    assert view["download"]["resumed_from"] == 5 * step
    assert (dl_app.paths.ckpt_dir / "flaky.safetensors").read_bytes() == body
    assert not [p for p in files_in(dl_app.paths.ckpt_dir) if p.endswith(".part")]


def test_a_server_without_range_support_is_read_again_from_the_start(dl_client, dl_app, models_server, tmp_path):
    body = _ckpt_bytes(tmp_path)
    url = models_server.add("/m/norange.safetensors", body=body, drop_after=[len(body) // 3], ranges=False)
    view = install(dl_client, url=url, sha256=hashlib.sha256(body).hexdigest())
    assert view["status"] == "done", view  # the hash covers exactly the file: the first third was dropped
    assert (dl_app.paths.ckpt_dir / "norange.safetensors").read_bytes() == body


def test_hash_mismatch_is_refused_and_nothing_is_left(dl_client, dl_app, models_server, tmp_path):
    body = _ckpt_bytes(tmp_path)
    url = models_server.add("/m/bad.safetensors", body=body)
    before = files_in(dl_app.paths.models_dir)
    view = install(dl_client, url=url, sha256="0" * 64)
    assert view["status"] == "failed" and "SHA-256 mismatch" in view["error"] and "deleted" in view["error"], view
    assert files_in(dl_app.paths.models_dir) == before  # no file, no .part, no temp file
    assert "bad" not in str(dl_client.get("/sdapi/v1/sd-models").json())


def test_hugging_face_published_hash_is_verified(dl_client, dl_app, models_server, tmp_path):
    """A hub file URL redirects with the file's SHA-256 in X-Linked-ETag (no hub is contacted: the same headers
    from the loopback server)."""
    body = _ckpt_bytes(tmp_path)
    digest = hashlib.sha256(body).hexdigest()
    models_server.add("/cdn/blob-1", body=body)
    url = models_server.add(
        "/org/repo/resolve/main/hub-model.safetensors",
        redirect="/cdn/blob-1",
        headers={"X-Linked-ETag": f'"{digest}"', "X-Linked-Size": str(len(body))},
    )
    view = install(dl_client, url=url)
    assert view["status"] == "done", view
    assert view["result"]["name"] == "hub-model.safetensors"  # the URL's name, not the CDN path's
    assert view["result"]["model"]["verified"] is True
    models_server.add("/cdn/blob-2", body=body)
    url = models_server.add(
        "/org/repo/resolve/main/hub-bad.safetensors",
        redirect="/cdn/blob-2",
        headers={"X-Linked-ETag": '"' + "ab" * 32 + '"'},
    )
    before = files_in(dl_app.paths.models_dir)
    view = install(dl_client, url=url)
    assert view["status"] == "failed" and "SHA-256 mismatch" in view["error"] and "published" in view["error"]
    assert files_in(dl_app.paths.models_dir) == before
    # a hash given by the user that contradicts the published one: refused before any body byte is stored
    url = models_server.add(
        "/org/repo/resolve/main/hub-2.safetensors", redirect="/cdn/blob-1", headers={"X-Linked-ETag": f'"{digest}"'}
    )
    view = install(dl_client, url=url, sha256="cd" * 32)
    assert view["status"] == "failed" and "nothing was downloaded" in view["error"]


def test_file_name_from_content_disposition_and_folder_from_the_file(dl_client, dl_app, models_server, tmp_path):
    from tests.lora.factory import write_kohya

    lora = write_kohya(tmp_path / "l.safetensors", seed=3).read_bytes()
    disposition = 'attachment; filename="../../evil/pixel-style.safetensors"'
    url = models_server.add("/api/download/models/12345", body=lora, headers={"Content-Disposition": disposition})
    view = install(dl_client, url=url, folder="Stable-diffusion")  # the wrong folder: a LoRA goes to Lora
    assert view["status"] == "done", view
    assert view["result"]["path"] == str(dl_app.paths.lora_dir / "pixel-style.safetensors")
    model = view["result"]["model"]
    assert model["folder"] == "Lora" and model["requested_folder"] == "Stable-diffusion" and model["notes"]
    assert "pixel-style" in {x["name"] for x in dl_client.get("/sdapi/v1/loras").json()}  # listed at once
    assert not (dl_app.paths.models_dir.parent / "evil").exists()
    # RFC 5987 names, and a taken name found only once the server names the file: 409-like failure, nothing replaced
    url = models_server.add(
        "/api/download/models/2",
        body=lora,
        headers={"Content-Disposition": "attachment; filename*=UTF-8''pixel-style.safetensors"},
    )
    view = install(dl_client, url=url, folder="Lora")
    assert view["status"] == "failed" and "already exists" in view["error"]
    assert (dl_app.paths.lora_dir / "pixel-style.safetensors").read_bytes() == lora


def test_folder_omitted_checkpoint_goes_to_stable_diffusion(dl_client, dl_app, models_server, tmp_path):
    body = _ckpt_bytes(tmp_path)
    url = models_server.add("/x/auto.safetensors", body=body)
    view = install(dl_client, url=url, filename="chosen-name.safetensors")
    assert view["status"] == "done", view
    assert view["result"]["path"] == str(dl_app.paths.ckpt_dir / "chosen-name.safetensors")
    assert view["result"]["model"]["verified"] is False  # no hash to check against: said so


def test_cancel_mid_download_keeps_nothing_and_hides_tokens(dl_client, dl_app, models_server, tmp_path):
    body = _ckpt_bytes(tmp_path)
    gate = threading.Event()
    url = models_server.add("/m/cancelled.safetensors", body=body, gate=gate) + "?token=s3cret&v=2"
    before = files_in(dl_app.paths.models_dir)
    r = dl_client.post("/easel/v1/models/install", json={"url": url})
    job_id = r.json()["id"]
    deadline = time.time() + 60
    while (
        time.time() < deadline
        and (dl_client.get(f"/easel/v1/jobs/{job_id}").json().get("download") or {}).get("bytes_done", 0) == 0
    ):
        time.sleep(0.02)
    view = dl_client.post(f"/easel/v1/jobs/{job_id}/cancel").json()
    gate.set()
    view = wait_job(dl_client, job_id)
    assert view["status"] in ("interrupted", "failed") and "interrupted" in (view["error"] or ""), view
    assert files_in(dl_app.paths.models_dir) == before
    assert "s3cret" not in str(view) and "token=%2A%2A%2A" in view["params"]["url"] and "v=2" in view["params"]["url"]
    assert models_server.seen[0].path.endswith("?token=s3cret&v=2")  # the real URL was used
