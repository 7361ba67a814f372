"""Model files sent to workers by sha256 (#22, webui/workers/model_files.py), without Ray: the head's list of what a
job needs, and the worker's end (missing → chunks → verified rename). The Ray path is in test_ray_workers.py, whose
workers start with an empty data dir of their own."""

from __future__ import annotations

import hashlib
import shutil
from types import SimpleNamespace

import pytest

from webui.errors import InvalidRequest
from webui.models.hashing import HashCache
from webui.workers.model_files import ModelFileReceiver, NeededFile, needed_files, read_chunks


def _worker_paths(root):
    m = root / "models"
    return SimpleNamespace(
        ckpt_dir=m / "Stable-diffusion",
        vae_dir=m / "VAE",
        lora_dir=m / "Lora",
        lycoris_dir=m / "LyCORIS",
        data_dir=root,
    )


def _needed(path, folder="Stable-diffusion", rel="sub/x.safetensors"):
    data = path.read_bytes()
    return NeededFile(folder, rel, hashlib.sha256(data).hexdigest(), len(data), str(path))


def _send(receiver, f, chunk=1000, corrupt=False):
    receiver.begin(f)
    for offset, data in read_chunks(f, chunk):
        if corrupt and offset == chunk:
            data = bytes([data[0] ^ 1]) + data[1:]
        receiver.write(f.sha256, offset, data)
    return receiver.commit(f.sha256)


def test_a_missing_file_is_sent_in_chunks_verified_and_then_present(tmp_path, tiny_models):
    src = tiny_models / "Stable-diffusion" / "sub" / "tiny-b.safetensors"
    changed = []
    rx = ModelFileReceiver(_worker_paths(tmp_path), HashCache(tmp_path / "cache.json"), on_change=changed.append)
    f = _needed(src)
    assert rx.missing([f]) == [f]
    written = _send(rx, f, chunk=4096)
    target = tmp_path / "models" / "Stable-diffusion" / "sub" / "x.safetensors"
    assert written == str(target) and target.read_bytes() == src.read_bytes()
    assert rx.missing([f]) == [] and rx.received == ["Stable-diffusion/sub/x.safetensors"]
    assert changed == [{"Stable-diffusion"}]
    assert not list(target.parent.glob(".*.part"))
    # a different file under the same name (a new version on the head) is missing again
    other = _needed(tiny_models / "Stable-diffusion" / "tiny-a.safetensors")
    assert rx.missing([other]) == [other]


def test_two_workers_sharing_a_folder_receive_the_same_file_at_once(tmp_path, tiny_models):
    """Local workers share one data folder: two that lack the same file receive it interleaved, and both commits
    succeed (one temp name for both made the second rename fail: FileNotFoundError, seen in CI)."""
    src = tiny_models / "Stable-diffusion" / "sub" / "tiny-b.safetensors"
    a, b = (ModelFileReceiver(_worker_paths(tmp_path), HashCache(tmp_path / f"c{i}.json")) for i in range(2))
    f = _needed(src)
    a.begin(f)
    b.begin(f)
    for offset, data in read_chunks(f, 4096):
        a.write(f.sha256, offset, data)
        b.write(f.sha256, offset, data)
    target = tmp_path / "models" / "Stable-diffusion" / "sub" / "x.safetensors"
    assert a.commit(f.sha256) == b.commit(f.sha256) == str(target)
    assert target.read_bytes() == src.read_bytes() and not list(target.parent.glob(".*.part"))


def test_a_corrupted_transfer_leaves_nothing(tmp_path, tiny_models):
    src = tiny_models / "Stable-diffusion" / "tiny-a.safetensors"
    rx = ModelFileReceiver(_worker_paths(tmp_path), HashCache(tmp_path / "cache.json"))
    f = _needed(src)
    with pytest.raises(InvalidRequest, match="not kept"):
        _send(rx, f, corrupt=True)
    folder = tmp_path / "models" / "Stable-diffusion" / "sub"
    assert list(folder.iterdir()) == [] and rx.received == [] and rx.missing([f]) == [f]


def test_out_of_order_or_oversized_chunks_are_refused(tmp_path, tiny_models):
    src = tiny_models / "Stable-diffusion" / "tiny-a.safetensors"
    rx = ModelFileReceiver(_worker_paths(tmp_path), HashCache(tmp_path / "cache.json"))
    f = _needed(src)
    rx.begin(f)
    with pytest.raises(InvalidRequest, match="does not follow"):
        rx.write(f.sha256, 10, b"x")
    assert not list((tmp_path / "models" / "Stable-diffusion" / "sub").iterdir())  # aborted: temp removed
    small = NeededFile(f.folder, f.rel, f.sha256, 3, f.source)
    rx.begin(small)
    with pytest.raises(InvalidRequest):
        rx.write(f.sha256, 0, b"four")
    with pytest.raises(InvalidRequest, match="no transfer"):
        rx.commit(f.sha256)


@pytest.mark.parametrize(
    "folder,rel",
    [
        ("Stable-diffusion", "../x.safetensors"),
        ("Lora", "/etc/passwd"),
        ("VAE", "a/../../b.pt"),
        ("Lora", ""),
        ("Lora", "a\x00b"),
        ("Lora", "a\\..\\b"),
        ("extensions", "x.py"),
        ("Lora", "./x"),
        ("Lora", "a//b"),
        ("training", "../config.json"),
        ("training", "x/../../easel.db"),
    ],
)
def test_paths_outside_the_folders_are_refused(tmp_path, folder, rel):
    rx = ModelFileReceiver(_worker_paths(tmp_path), HashCache(tmp_path / "cache.json"))
    f = NeededFile(folder, rel, "0" * 64, 1)
    with pytest.raises(InvalidRequest, match="refused"):
        rx.missing([f])
    with pytest.raises(InvalidRequest, match="refused"):
        rx.begin(f)
    assert not (tmp_path / "models").exists() and not (tmp_path / "training").exists()


def test_the_head_lists_checkpoint_vae_and_loras_with_their_hashes(make_app, data_dir):
    from tests.lora.factory import write_kohya

    models = data_dir / "models"
    write_kohya(models / "Lora" / "style" / "ink.safetensors", seed=1)
    shutil.copy(models / "Stable-diffusion" / "tiny-a.safetensors", models / "VAE" / "my.vae.safetensors")
    app = make_app("--nowebui", start=False)
    app.catalog.refresh()
    app.models.refresh()
    app.lora_catalog.refresh()
    task = SimpleNamespace(
        kind="txt2img",
        checkpoint="sub/tiny-b.safetensors",
        options={"sd_vae": "my.vae.safetensors"},
        request=SimpleNamespace(prompt="a cat <lora:ink:0.8> <lora:nope:1>", hr_prompt=""),
    )
    files = {f.key: f for f in needed_files(app, task)}
    assert set(files) == {
        "Stable-diffusion/sub/tiny-b.safetensors",
        "VAE/my.vae.safetensors",
        "Lora/style/ink.safetensors",
    }
    for f in files.values():
        from pathlib import Path

        data = Path(f.source).read_bytes()
        assert f.sha256 == hashlib.sha256(data).hexdigest() and f.size == len(data)
    # Automatic VAE beside the checkpoint travels with it; a diffusers folder or the demo model never does
    shutil.copy(models / "VAE" / "my.vae.safetensors", models / "Stable-diffusion" / "tiny-a.vae.safetensors")
    task = SimpleNamespace(
        kind="txt2img",
        checkpoint="tiny-a",
        options={"sd_vae": "Automatic"},
        request=SimpleNamespace(prompt="x", hr_prompt=None),
    )
    assert {f.key for f in needed_files(app, task)} == {
        "Stable-diffusion/tiny-a.safetensors",
        "Stable-diffusion/tiny-a.vae.safetensors",
    }
    bare = SimpleNamespace(kind="txt2img", checkpoint="", options={}, request=SimpleNamespace(prompt="x"))
    assert needed_files(app, bare) == []


def test_worker_paths_follow_the_flag(tmp_path):
    from webui.flags import parse_args

    pytest.importorskip("ray", reason="pip install -r requirements-ray.txt")
    from webui.workers.pool import worker_paths

    assert worker_paths(parse_args(["--data-dir", str(tmp_path / "head")])) is None
    own = worker_paths(
        parse_args(
            [
                "--data-dir",
                str(tmp_path / "head"),
                "--lora-dir",
                str(tmp_path / "L"),
                "--ray-worker-data-dir",
                str(tmp_path / "w"),
            ]
        )
    )
    assert own.ckpt_dir == tmp_path / "w" / "models" / "Stable-diffusion"
    assert own.lora_dir == tmp_path / "w" / "models" / "Lora" and own.cache_file == tmp_path / "w" / "cache.json"


def test_affinity_prefers_the_worker_holding_the_job_s_loras():
    """Among idle workers with the checkpoint loaded, the one that holds more of the prompt's LoRAs; then fewest
    jobs. A worker holding the LoRAs on another (not active) checkpoint gets no credit for them."""
    pytest.importorskip("ray", reason="pip install -r requirements-ray.txt")
    from webui.workers.pool import RayPool, WorkerSlot

    app = SimpleNamespace(ns=SimpleNamespace(), catalog=SimpleNamespace(find=lambda q: SimpleNamespace(title=q)))
    pool = RayPool(app, address=None, num_workers=3, threads=1, max_retries=1)

    def job(prompt, ckpt="A"):
        task = SimpleNamespace(
            kind="txt2img",
            checkpoint=ckpt,
            options={"sd_checkpoints_limit": 2},
            request=SimpleNamespace(prompt=prompt, hr_prompt=""),
        )
        return SimpleNamespace(id=prompt, remote=SimpleNamespace(task=task), worker=None)

    def reset():
        pool.slots = {
            "w1": WorkerSlot("w1", None, "idle", loaded=["A"], loras=["ink"], jobs_done=5),
            "w2": WorkerSlot("w2", None, "idle", loaded=["A"], loras=["oil", "pen"], jobs_done=9),
            "w3": WorkerSlot("w3", None, "idle", loaded=["A", "B"], loras=["oil", "pen"], jobs_done=0),
        }

    reset()
    assert pool.choose(job("x <lora:oil:1> <lora:pen:0.5>")).id == "w2"  # w3 holds them on B, its active model
    reset()
    assert pool.choose(job("x <lora:ink:1>")).id == "w1"
    reset()
    assert pool.choose(job("plain")).id == "w3"  # no LoRAs: fewest jobs among those with A
    reset()
    assert pool.choose(job("x <lora:oil:1>", ckpt="B")).id == "w3"  # the checkpoint comes first


def test_the_built_in_extensions_keep_no_plain_job_off_the_workers(make_app):
    """A global after_image/step_end/image_saved listener keeps every job on the head (extensions live there only):
    no built-in extension may have one (IP-Adapter's schedule is a per-call PipelineCall.on_step listener)."""
    from webui.workers.remote import LOCAL_ONLY_EVENTS

    app = make_app("--nowebui")
    assert {"ip_adapter", "adetailer", "controlnet"} <= {r.name for r in app.extensions.active()}
    assert [e for e in LOCAL_ONLY_EVENTS if app.extensions.has_hooks(e)] == []
