"""The VAE decode in fp32 against Easel's bf16 decode (vae_precision.bf16_decode: what cpu_vae_precision Automatic
picks for a VAE its guard passes), alternated in one process on the SD1.5 VAE config with random weights; prints
each pair, the median ratio and the PSNR of the two decodes, and the guard's own value for this VAE.

    python benchmarks/vae_decode.py [--size 512] [--pairs 4] [--threads 0]
"""

from __future__ import annotations

import argparse
import time

from _common import median


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--threads", type=int, default=0, help="0: the physical cores")
    a = ap.parse_args()

    import numpy as np
    import torch
    from diffusers import AutoencoderKL

    from webui.models.device import physical_cores
    from webui.models.probe import load_template
    from webui.models.vae_precision import bf16_decode, measure_bf16_psnr

    torch.set_num_threads(a.threads or physical_cores())
    torch.manual_seed(0)
    vae = AutoencoderKL.from_config(load_template("sd15", "vae")).eval()
    z = torch.randn(1, 4, a.size // 8, a.size // 8)
    sides = {"fp32": vae.decode, "bf16": bf16_decode(vae, vae.decode)}
    times: dict[str, list[float]] = {k: [] for k in sides}
    with torch.no_grad():
        ref, fast = (sides[k](z).sample for k in ("fp32", "bf16"))  # also the warm-up
        u8 = lambda x: ((x / 2 + 0.5).clamp(0, 1) * 255).round().numpy().astype(np.float64)  # noqa: E731
        psnr = 10 * np.log10(255**2 / np.mean((u8(ref) - u8(fast)) ** 2))
        for i in range(a.pairs):
            for name in ("fp32", "bf16") if i % 2 == 0 else ("bf16", "fp32"):
                t0 = time.perf_counter()
                sides[name](z)
                times[name].append(time.perf_counter() - t0)
            print(f"pair {i}: fp32 {times['fp32'][-1]:.2f} s, bf16 {times['bf16'][-1]:.2f} s", flush=True)
    ratios = [f / b for f, b in zip(times["fp32"], times["bf16"])]
    print(
        f"SD1.5 VAE decode {a.size}², {torch.get_num_threads()} threads: fp32 {median(times['fp32']):.2f} s, bf16 "
        f"{median(times['bf16']):.2f} s, ×{median(ratios):.2f} (pairs {min(ratios):.2f}–{max(ratios):.2f}); "
        f"PSNR of the decodes {psnr:.1f} dB; the guard's value for this VAE {measure_bf16_psnr(vae):.1f} dB"
    )


if __name__ == "__main__":
    main()
