"""The merge's RAM bound: merging streams row blocks, so the process's peak RSS above its baseline stays at a few
blocks (run.BLOCK_BYTES of float32 each) however large the checkpoints and their largest tensor are.

The suite uses two ~335 MB random checkpoints with a CLIP-sized 145 MiB token embedding (merging that tensor whole
would take ~4 × 145 MiB); benchmarks/merge_memory.py measures the same on full-size SD 1.5 files (4.3 GB each).
The merge runs in a child process so its peak RSS is its own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from webui.merge.run import BLOCK_BYTES, _blocks
from webui.merge.stream_writer import TensorSpec, stream_safetensors

REPO = Path(__file__).resolve().parents[2]
MIB = 2**20
SHAPES = {
    "model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3),
    "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": (49408, 768),  # 145 MiB
    **{f"model.diffusion_model.middle_block.{i}.proj.weight": (1280, 2560) for i in range(14)},  # 12.5 MiB each
    "first_stage_model.decoder.conv_out.bias": (3,),
}


def _write(path: Path, seed: int) -> Path:
    gen = torch.Generator().manual_seed(seed)
    with stream_safetensors(path, [TensorSpec(k, torch.float32, s) for k, s in SHAPES.items()], {}) as w:
        for spec in w.specs:
            for start, stop in _blocks(spec.shape):
                w.write(torch.randn((stop - start, *spec.shape[1:]), generator=gen))
    return path


def test_peak_rss_stays_within_a_few_blocks(tmp_path):
    a, b = _write(tmp_path / "a.safetensors", 0), _write(tmp_path / "b.safetensors", 1)
    out = tmp_path / "out.safetensors"
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "merge_memory.py"),
            "--measure",
            "weighted_sum",
            str(out),
            str(a),
            str(b),
        ],
        capture_output=True,
        text=True,
        cwd=str(REPO),
        timeout=600,
        env={"EASEL_MERGE_THREADS": "1", "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    r = json.loads(done.stdout.strip().splitlines()[-1])
    above = r["peak_rss"] - r["baseline_rss"]
    assert r["input_bytes"] > 600 * MIB and r["largest_tensor_bytes"] > 140 * MIB
    print(f"peak RSS {above / MIB:.0f} MiB above baseline")
    assert above < 6 * BLOCK_BYTES, f"peak RSS {above / MIB:.0f} MiB above baseline"  # 192 MiB
    # and the result is the merge, read back by the library
    from safetensors import safe_open

    with safe_open(str(out), "pt") as f, safe_open(str(a), "pt") as fa, safe_open(str(b), "pt") as fb:
        key = "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"
        assert torch.equal(
            f.get_slice(key)[1000:1010], 0.5 * fa.get_slice(key)[1000:1010] + 0.5 * fb.get_slice(key)[1000:1010]
        )
