"""The offline config cache (data/cache/configs/<hash>/): a file broken by a full disk is never trusted, and heals.

Issue #16 item 9: a truncated tokenizer/vocab.json was kept for good (existing files skipped, then `done`
written) and every later generation failed until the folder was deleted by hand.
"""

from __future__ import annotations

import errno
import os
import resource
from pathlib import Path

import pytest

from webui.models import loader
from webui.models.tokenizer import BPE_DIR


def _cache_folder(data_dir: Path) -> Path:
    folders = [p for p in (data_dir / "cache" / "configs").iterdir() if (p / "tokenizer").is_dir()]
    assert len(folders) == 1, folders
    return folders[0]


def _txt2img(application) -> int:
    from fastapi.testclient import TestClient

    from webui.api.server import build_fastapi

    with TestClient(build_fastapi(application)) as c:
        r = c.post("/sdapi/v1/txt2img", json={"prompt": "a red circle", "steps": 1, "width": 64, "height": 64})
    assert r.status_code == 200, r.text
    return len(r.json()["images"])


def test_truncated_cached_vocab_is_repaired_on_the_next_start(make_app, data_dir):
    first = make_app("--nowebui", "--api")
    first.stop()
    folder = _cache_folder(data_dir)
    vocab = folder / "tokenizer" / "vocab.json"
    good = (BPE_DIR / "vocab.json").read_bytes()
    assert vocab.read_bytes() == good and (folder / "done").exists()
    # what a full disk left behind: the hard link failed, the copy stopped half way, and `done` is there
    vocab.unlink()
    vocab.write_bytes(good[: len(good) // 3])
    (folder / "unet" / "config.json").write_text('{"in_channels": 4, "truncat')

    second = make_app("--nowebui", "--api")
    assert second.models.active is not None, "the model did not load from the broken cache"
    assert _txt2img(second) == 1
    assert vocab.read_bytes() == good
    assert (folder / "unet" / "config.json").read_text().rstrip().endswith("}")


def test_disk_full_while_writing_leaves_no_partial_file_and_no_done(tiny_models, tmp_path, monkeypatch):
    """The disk stops taking bytes in the middle of vocab.json (RLIMIT_FSIZE: a real short write, as on a full
    disk); the hard link is unavailable (another filesystem), so the file has to be copied."""
    ckpt = tiny_models / "Stable-diffusion" / "tiny-a.safetensors"
    result = loader.probe_file(ckpt)
    cache = tmp_path / "configs"
    monkeypatch.setattr(os, "link", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.EXDEV, "cross-device")))
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, hard))  # the JSON configs fit, vocab.json (961 kB) doesn't
    try:
        with pytest.raises(OSError) as e:
            loader.write_config_folder(result, cache)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert e.value.errno in (errno.EFBIG, errno.ENOSPC)
    (folder,) = list(cache.iterdir())
    assert not (folder / "done").exists()
    written = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file()}
    assert "unet/config.json" in written  # the failure came part way through
    assert "tokenizer/vocab.json" not in written, "a partial vocab.json is under its final name"
    assert not [n for n in written if n.endswith(".tmp")], "a temp file was left behind"

    # the next load repairs it, and the cache is complete and correct
    assert loader.write_config_folder(result, cache) == folder
    assert (folder / "done").exists()
    assert (folder / "tokenizer" / "vocab.json").read_bytes() == (BPE_DIR / "vocab.json").read_bytes()
    assert (folder / "tokenizer" / "merges.txt").read_bytes() == (BPE_DIR / "merges.txt").read_bytes()
    lc = loader.build_from_single_file(ckpt, cache)
    assert lc.pipeline.tokenizer("a red circle").input_ids[:2] == [49406, 320]


def test_disk_full_during_a_load_is_a_disk_full_error(tiny_models, tmp_path, monkeypatch):
    from webui.errors import DiskFull

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(DiskFull) as e:
        loader.build_from_single_file(tiny_models / "Stable-diffusion" / "tiny-a.safetensors", tmp_path / "configs")
    assert e.value.status == 507 and "disk full" in e.value.message
    assert not [p for p in (tmp_path / "configs").rglob("*") if p.is_file()]  # nothing half-written kept
