"""Issue 21, target 1 on the opt-in `cpu_compile` path: one SD 1.5 UNet step (random weights, CFG batch 2) three
ways on the same module and weights, rotated in one process: Easel's eager default (bf16 autocast, held and
prepacked weights), the same under `cpu_compile` (webui/models/compile.py: inductor, no freezing) and plain
OpenVINO bf16 (static shape, its own bf16 inference precision). Prints each side's first call (the compile, the
first of this shape in this process) and per-step error against fp32 at t = 500, then medians and ratios.

    python benchmarks/compile_step.py --size 512 --pairs 4      # ~5 min idle (OpenVINO's conversion ~60 s)

Inductor's on-disk cache is torch's default here unless TORCHINDUCTOR_CACHE_DIR is set; run twice to see the first
call with the cache warm.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--threads", type=int, default=0, help="torch and OpenVINO threads (0: the physical cores)")
    a = ap.parse_args()

    import torch
    from _common import held_bf16, print_ratios, rotated
    from _openvino import compile_unet, import_openvino
    from cpu_fast_path import build_unet

    from webui.models.compile import set_unet_compile
    from webui.models.device import physical_cores
    from webui.models.precision import install_unet_autocast

    threads = a.threads or physical_cores()
    torch.set_num_threads(threads)
    unet = build_unet("sd15")
    x = torch.randn(2, 4, a.size // 8, a.size // 8)
    ctx = torch.randn(2, 77, unet.config.cross_attention_dim)
    with torch.no_grad():
        ref = unet(x, torch.tensor(500), encoder_hidden_states=ctx).sample
    sides = {}
    ov, why = import_openvino("auto")
    if ov is not None:
        runs, seconds = compile_unet(ov, unet, x, ctx, ["bf16"], threads)
        print(f"plain OpenVINO: {seconds}", flush=True)
        sides["plain OpenVINO bf16"] = runs["OpenVINO bf16"]
    else:
        print(f"plain OpenVINO skipped: {why}", flush=True)
    switch = install_unet_autocast(unet)

    def torch_side(compiled: bool):
        def step(t: int):
            set_unet_compile(unet, compiled)
            switch.enabled = True
            try:
                return unet(x, torch.tensor(t), encoder_hidden_states=ctx).sample
            finally:
                switch.enabled = False

        return step

    sides = {"eager default": torch_side(False), "cpu_compile": torch_side(True), **sides}
    with held_bf16(unet, switch):  # as the runtime holds them for a pipeline call
        for name, side in sides.items():
            t0 = time.perf_counter()
            out = side(500)
            err = float((out.float() - ref).norm() / ref.norm()) * 100
            print(f"{name:22s} first call {time.perf_counter() - t0:6.1f} s  error vs fp32 {err:.3f}%", flush=True)
        times = rotated(sides, a.pairs, lambda i: 900 - 40 * i)
    print(f"\nSD 1.5 UNet, {a.size}², CFG batch 2, {threads} threads, {a.pairs} rounds")
    print_ratios(times, "eager default")


if __name__ == "__main__":
    main()
