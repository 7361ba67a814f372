"""CPU fast path: an SD1.5-size UNet (the shipped SD1.5 config, random weights), CFG batch 2, at 512² and 256².
Plain diffusers fp32 against Easel's default CPU path (the UNet under bf16 autocast when the CPU has native bf16)
and single levers (channels_last). Prints s/step, ratios and peak RSS. Target: ≥ 2.5× at 512².

    python benchmarks/cpu_fast_path.py [--sizes 512,256] [--steps 3]
"""

from __future__ import annotations

import argparse
import resource
import time

from _common import median  # noqa: F401  (sets up sys.path and offline env)


def step_time(unet, size: int, steps: int) -> float:
    import torch

    x = torch.randn(2, 4, size // 8, size // 8)
    ctx = torch.randn(2, 77, 768)
    with torch.no_grad():
        unet(x, 999, encoder_hidden_states=ctx)  # warm-up (oneDNN primitive creation)
        t0 = time.perf_counter()
        for i in range(steps):
            unet(x, 999 - i * 50, encoder_hidden_states=ctx)
    return (time.perf_counter() - t0) / steps


def main() -> None:
    import torch
    from diffusers import UNet2DConditionModel

    from webui.models.device import choose_policy
    from webui.models.precision import install_unet_autocast
    from webui.models.probe import load_template

    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="512,256")
    ap.add_argument("--steps", type=int, default=3)
    a = ap.parse_args()
    policy = choose_policy()
    print(f"policy: {policy.label} ({policy.note}); threads {torch.get_num_threads()}")
    unet = UNet2DConditionModel.from_config(load_template("sd15", "unet")).eval()
    switch = install_unet_autocast(unet)
    for size in (int(s) for s in a.sizes.split(",")):
        switch.enabled = False
        fp32 = step_time(unet, size, a.steps)
        rows = [("plain fp32", fp32)]
        if policy.cpu_bf16:
            switch.enabled = True
            rows.append(("Easel default (bf16 autocast)", step_time(unet, size, a.steps)))
            unet.to(memory_format=torch.channels_last)
            rows.append(("bf16 + channels_last", step_time(unet, size, a.steps)))
            unet.to(memory_format=torch.contiguous_format)
            switch.enabled = False
        unet.to(memory_format=torch.channels_last)
        rows.append(("fp32 + channels_last", step_time(unet, size, a.steps)))
        unet.to(memory_format=torch.contiguous_format)
        for name, t in rows:
            print(f"{size}x{size} {name:32s} {t:7.3f} s/step  speed-up {fp32 / t:5.2f}x")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
