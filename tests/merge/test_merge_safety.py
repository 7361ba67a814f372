"""What a merge never does: leave a partial file (interrupt, full disk), run a pickle, or write one."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from tests.merge.conftest import A, B, merge, read_all, wait_job
from webui.errors import DiskFull, Interrupted
from webui.generation.control import JobControl
from webui.jobs import Job
from webui.merge.service import check_request, run_merge


class _StopAt(JobControl):
    def step(self, n: int) -> None:
        super().step(n)
        if n == 10:
            self.interrupt()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or p.name.startswith("stop"))


def test_an_interrupted_merge_leaves_nothing(app, ckpt):
    folder, _, _ = ckpt
    spec = check_request(app, {"primary": A, "secondary": B, "name": "stopped"})
    job = Job(kind="merge", params={}, fn=lambda j: None, control=_StopAt())
    with pytest.raises(Interrupted):
        run_merge(app, spec, job)
    assert job.control.sampling_step == 10 and job.control.sampling_steps > 10
    assert _leftovers(folder) == []


def test_a_full_disk_is_refused_before_writing(app, ckpt, monkeypatch):
    import shutil

    folder, _, _ = ckpt
    spec = check_request(app, {"primary": A, "secondary": B, "name": "big"})
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10 << 30, 10 << 30, 1 << 20))
    with pytest.raises(DiskFull, match="disk full"):
        run_merge(app, spec, Job(kind="merge", params={}, fn=lambda j: None))
    assert not (folder / "big.safetensors").exists() and _leftovers(folder) == []


def test_ckpt_inputs_merge_through_the_weights_only_loader(client, app, ckpt):
    folder, ta, tb = ckpt
    torch.save({"state_dict": dict(ta)}, str(folder / "legacy-a.ckpt"))
    sidecar_meta = read_all(folder / A)[1]["easel.config"]
    (folder / "legacy-a.easel.json").write_text(sidecar_meta)  # a .ckpt's hyperparameters live beside it
    app.models.refresh()
    view = merge(client, primary="legacy-a.ckpt", secondary=B, multiplier=0.5, name="from-ckpt")
    assert view["status"] == "done", view
    out, meta = read_all(folder / "from-ckpt.safetensors")
    key = "model.diffusion_model.out.2.weight"
    assert torch.equal(out[key], 0.5 * ta[key] + 0.5 * tb[key])
    assert meta["easel.config"] == sidecar_meta  # the output is a .safetensors that loads without the sidecar
    with open(folder / "from-ckpt.safetensors", "rb") as f:  # safetensors (length + JSON), never a pickle
        n = int.from_bytes(f.read(8), "little")
        assert f.read(2) == b'{"' and n < os.path.getsize(folder / "from-ckpt.safetensors")


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_hostile_pickle_is_refused_and_never_runs(client, app, ckpt, tmp_path):
    folder, _, _ = ckpt
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with open(folder / "evil.ckpt", "wb") as f:
        pickle.dump({"state_dict": {"x": Evil()}}, f)
    app.models.refresh()
    r = client.post("/easel/v1/merge", json={"primary": A, "secondary": "evil.ckpt", "name": "evil-merge"})
    assert r.status_code == 202  # a .ckpt is only read when the job runs (torch unpickles whole files)
    view = wait_job(client, r.json()["id"])
    assert view["status"] == "failed" and "refused" in view["error"], view
    assert not marker.exists() and not (folder / "evil-merge.safetensors").exists()
