"""OpenVINO's attention kernel under the torch UNet (setting `cpu_attention`; webui/models/attention_kernel.py).

Three measurements, each paired in one process:

    python benchmarks/attention_kernel.py --shapes                 # SDPA alone, torch against the kernel, per shape
    python benchmarks/attention_kernel.py --steps 512 --pairs 4    # SD 1.5 UNet steps (random weights, CFG batch 2):
                                                                   #   torch default, + the kernel, Easel's
                                                                   #   cpu_backend=openvino, plain OpenVINO bf16
    python benchmarks/attention_kernel.py --profile 512            # one step of each: torch.profiler's top ops and
                                                                   #   OpenVINO's per-layer-type perf counters

`--steps` converts the UNet twice (Easel's backend into --cache, reused by later runs; plain OpenVINO ~60 s).
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

# (label, batch, heads, query tokens, key tokens, head_dim): SD 1.5's and SDXL's attention calls, CFG batch 2
SHAPES = [
    ("SD 1.5 512² level 1 self", 2, 8, 4096, 4096, 40),
    ("SD 1.5 512² level 1 cross", 2, 8, 4096, 77, 40),
    ("SD 1.5 512² level 2 self", 2, 8, 1024, 1024, 80),
    ("SD 1.5 512² level 3 self", 2, 8, 256, 256, 160),
    ("SD 1.5 256² level 1 self", 2, 8, 1024, 1024, 40),
    ("SDXL 1024² level 2 self", 2, 10, 4096, 4096, 64),
    ("SDXL 1024² level 3 self", 2, 20, 1024, 1024, 64),
    ("SDXL 1024² level 2 cross", 2, 10, 4096, 77, 64),
    ("tiny test UNet 64²", 2, 2, 64, 64, 16),
]


def shapes(ov, threads: int) -> None:
    import torch
    import torch.nn.functional as F

    from webui.models.attention_kernel import OpenVinoSdpa

    kernel = OpenVinoSdpa(ov, threads)
    for dtype in (torch.bfloat16, torch.float32):
        for label, b, h, lq, lk, d in SHAPES:
            q, k, v = (torch.randn(b, n, h * d).to(dtype).view(b, n, h, d).transpose(1, 2) for n in (lq, lk, lk))
            ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float())
            a, o = [], []
            for _ in range(4 if lq >= 4096 else 10):  # the first of each is a warm-up (the kernel's compile)
                t0 = time.perf_counter()
                ours = F.scaled_dot_product_attention(q, k, v)
                a.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                theirs = kernel(q, k, v, None)
                o.append(time.perf_counter() - t0)
            err = [float((x.float() - ref).norm() / ref.norm()) * 100 for x in (ours, theirs)]
            ta, to = statistics.median(a[1:]), statistics.median(o[1:])
            print(
                f"{str(dtype)[6:]:8s} {label:28s} torch {ta * 1000:8.2f} ms ({err[0]:.2f}%)  "
                f"OpenVINO {to * 1000:8.2f} ms ({err[1]:.2f}%)  ×{ta / to:.2f}",
                flush=True,
            )


def unet_sides(ov, size: int, threads: int, cache: str, plain_openvino: bool = True):
    """The SD 1.5 UNet and one callable per side (all on the same module and weights)."""
    import torch
    from _common import held_bf16
    from _openvino import compile_unet
    from cpu_fast_path import build_unet, easel_openvino_sides

    from webui.models import attention_kernel as ak
    from webui.models.precision import install_unet_autocast

    unet = build_unet("sd15")
    x = torch.randn(2, 4, size // 8, size // 8)
    ctx = torch.randn(2, 77, unet.config.cross_attention_dim)
    sides, note = easel_openvino_sides(unet, x, ctx, "sd15", ["bf16"], threads, cache)
    print(note, flush=True)
    if plain_openvino:
        more, seconds = compile_unet(ov, unet, x, ctx, ["bf16"], threads)
        print(f"plain OpenVINO: {seconds}", flush=True)
        sides.update({f"plain {k}": v for k, v in more.items()})
    switch = install_unet_autocast(unet)

    def torch_default(t: int):
        switch.enabled = True
        try:
            return unet(x, torch.tensor(t), encoder_hidden_states=ctx).sample
        finally:
            switch.enabled = False

    def with_kernel(t: int):
        with ak.running(unet, ov, threads):
            return torch_default(t)

    sides = {"torch default": torch_default, "torch default + OpenVINO attention": with_kernel, **sides}
    return unet, x, ctx, sides, lambda: held_bf16(unet, switch)


def steps(ov, size: int, pairs: int, threads: int, cache: str) -> None:
    import torch
    from _common import print_ratios, rotated

    unet, x, ctx, sides, held = unet_sides(ov, size, threads, cache)
    with torch.no_grad():
        ref = unet(x, torch.tensor(500), encoder_hidden_states=ctx).sample
    with held():
        for name, side in sides.items():
            err = float((side(500).float() - ref).norm() / ref.norm()) * 100
            print(f"{name:40s} per-step error against fp32 at t=500: {err:.3f}%", flush=True)
        times = rotated(sides, pairs, lambda i: 900 - 40 * i)
    print(f"\nSD 1.5 UNet, {size}², CFG batch 2, {threads} threads, {pairs} rounds")
    print_ratios(times, "torch default")


def profile(ov, size: int, threads: int, cache: str) -> None:
    import numpy as np
    import torch

    from webui.models import openvino_backend as ovb
    from webui.models.openvino_precision import timestep_shape

    unet, x, ctx, sides, held = unet_sides(ov, size, threads, cache, plain_openvino=False)
    hook = ovb.hook_of(unet)
    assert hook is not None and hook.model is not None
    config = {"INFERENCE_PRECISION_HINT": "bf16", "INFERENCE_NUM_THREADS": threads, "PERF_COUNT": True}
    request = hook.core.compile_model(hook.model, "CPU", config).create_infer_request()
    inputs = [x.numpy(), np.full(timestep_shape(hook.model, 2), 500.0, dtype=np.float32), ctx.numpy()]
    request.infer(inputs)
    request.infer(inputs)
    by_type: dict[str, float] = collections.defaultdict(float)
    for layer in request.profiling_info:
        by_type[f"{layer.node_type} ({layer.exec_type.split('_')[0]})"] += layer.real_time.total_seconds()
    total = sum(by_type.values())
    print(f"Easel cpu_backend=openvino bf16, one step: {total:.2f} s by layer type")
    for name, seconds in sorted(by_type.items(), key=lambda kv: -kv[1])[:10]:
        print(f"  {name:36s} {seconds:7.3f} s  {100 * seconds / total:5.1f}%")
    for name in ("torch default", "torch default + OpenVINO attention"):
        with held():
            sides[name](500)
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                sides[name](400)
        print(f"\n{name}, one step:")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", action="store_true")
    ap.add_argument("--steps", type=int, default=0, help="image size of the paired UNet steps (0: skip)")
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--profile", type=int, default=0, help="image size of the one-step profiles (0: skip)")
    ap.add_argument("--threads", type=int, default=0, help="torch and OpenVINO threads (0: the physical cores)")
    ap.add_argument("--cache", default="/tmp/easel-bench-openvino", help="Easel's IR cache (reused across runs)")
    a = ap.parse_args()
    import torch

    from webui.models.device import physical_cores
    from webui.models.openvino_backend import import_openvino

    ov, why = import_openvino()
    if ov is None:
        sys.exit(why)
    threads = a.threads or physical_cores()
    torch.set_num_threads(threads)
    if a.shapes:
        shapes(ov, threads)
    if a.steps:
        steps(ov, a.steps, a.pairs, threads, a.cache)
    if a.profile:
        profile(ov, a.profile, threads, a.cache)


if __name__ == "__main__":
    main()
