"""Opt-in bf16 VAE decode on the CPU (setting `cpu_vae_precision`: fp32 | bf16; default fp32).

Issue 10 keeps the VAE decode in fp32 unless bf16 is shown to match. Measured: the bundled demo model's trained VAE
decodes 20-step latents in bf16 at 51.7–53.8 dB PSNR against fp32 (seeds 1–8; tests assert ≥ 40 dB). SD's own VAE
weights are not on this machine, so bf16 stays opt-in. Speed, SD1.5 VAE config at 512², 2 threads: fp32 20.2 s per
decode, bf16 6.7 s — on a 20-step 512² txt2img the decode is otherwise a fifth of the time.

For a job that asks for it, the model runtime (runtime.py `vae_precision`) routes the VAE's decode through
`bf16_decode` and puts it back at the end of the job. Each decode converts the decoder's weights for that call only
(`precision.hold_bf16`: bf16, channels_last, prepacked), so an fp32 request right after is exactly fp32 again.
Decoding runs under bf16 autocast (norms stay fp32) and the image comes back fp32.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import torch

from webui.models.precision import hold_bf16, to_fp32

KEY = "easel.vae_bf16"  # the runtime's override key for this decode


def choose_vae_precision(setting: str, policy, vae) -> str:
    """"bf16" only when asked for, on a CPU with native bf16, for an fp32 VAE (`--no-half` forces fp32)."""
    if (setting == "bf16" and policy.device.type == "cpu" and policy.cpu_bf16 and vae is not None
            and getattr(vae, "dtype", None) == torch.float32 and hasattr(vae, "decode")):
        return "bf16"
    return "fp32"


def bf16_decode(vae: Any, decode: Callable) -> Callable:
    """`decode` (the VAE's current one, e.g. with the --no-half-vae bridge) run in bf16, the image back in fp32."""

    @functools.wraps(decode)
    def run(z, *args, **kwargs):
        modules = [m for m in (getattr(vae, "decoder", None), getattr(vae, "post_quant_conv", None))
                   if isinstance(m, torch.nn.Module)]
        with torch.no_grad(), hold_bf16(modules), torch.autocast("cpu", dtype=torch.bfloat16):
            out = decode(z, *args, **kwargs)
        return to_fp32(out)

    return run
