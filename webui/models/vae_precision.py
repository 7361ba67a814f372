"""bf16 VAE decode on the CPU (setting `cpu_vae_precision`: Automatic | fp32 | bf16; default Automatic).

Issue 10 kept the decode in fp32 unless bf16 is shown to match; issue 21 makes bf16 the default where it is shown
to match *for the VAE in use*: "Automatic" decodes in bf16 on a CPU with native bf16 only for a decoder of at least
AUTO_MIN_DECODER_PARAMS parameters that passed `Bf16VaeGuard` (its bf16 decode of a test image's latent within
MIN_PSNR dB of its fp32 decode; measured once per VAE object, about 1/16 of a 512² decode). A VAE that fails stays
fp32 ("bf16" forces it anyway). Measured: the bundled demo model's trained VAE decodes 20-step latents in bf16 at
51.7–53.8 dB PSNR against fp32 (seeds 1–8), its guard 51.7 dB. Speed: docs/performance.md (paired figures).

For a job that asks for it, the model runtime (runtime.py `vae_precision`) routes the VAE's decode through
`bf16_decode` and puts it back at the end of the job. Each decode converts the decoder's weights for that call only
(`precision.hold_bf16`: bf16, channels_last, prepacked), so an fp32 request right after is exactly fp32 again.
Decoding runs under bf16 autocast (norms stay fp32) and the image comes back fp32.
"""

from __future__ import annotations

import functools
import logging
import weakref
from typing import Any, Callable

import numpy as np
import torch

from webui.models.precision import hold_bf16, to_fp32

log = logging.getLogger("easel.vae_precision")
KEY = "easel.vae_bf16"  # the runtime's override key for this decode
MIN_PSNR = 40.0  # dB, bf16 against fp32 decode of the guard's test image (the demo VAE: 51.7, SD1.5-sized: 44)
# Decoders smaller than this stay fp32 under Automatic, as small UNets do (precision.AUTO_MIN_PARAMS): the bundled
# demo's (0.4M) and the test models' gain nothing from bf16. SD's decoder has 49M, the benchmarks' mid one 12M.
AUTO_MIN_DECODER_PARAMS = 5_000_000


def choose_vae_precision(setting: str, policy, vae, guard: "Bf16VaeGuard | None" = None, measure: bool = True) -> str:
    """ "bf16" on a CPU with native bf16, for an fp32 VAE (`--no-half` forces fp32), when asked for ("bf16") or when
    "Automatic" and `guard` passes this VAE (no guard, or not measured yet with `measure` False: fp32). Only the job's
    own thread may measure: the measurement holds the VAE's weights in bf16 for a moment."""
    if not (
        policy.device.type == "cpu"
        and policy.cpu_bf16
        and vae is not None
        and getattr(vae, "dtype", None) == torch.float32
        and hasattr(vae, "decode")
    ):
        return "fp32"
    if setting == "bf16":
        return "bf16"
    if setting != "Automatic" or guard is None or _decoder_params(vae) < AUTO_MIN_DECODER_PARAMS:
        return "fp32"
    return "bf16" if guard.passes(vae, measure) else "fp32"


def _decoder_params(vae) -> int:
    decoder = getattr(vae, "decoder", None)
    return sum(p.numel() for p in decoder.parameters()) if isinstance(decoder, torch.nn.Module) else 0


class Bf16VaeGuard:
    """Whether a VAE's bf16 decode matches its fp32 decode: PSNR of the two decodes of one test image's latent,
    measured once per VAE object (held weakly, so it goes with the VAE; owned by the ModelManager)."""

    def __init__(self) -> None:
        self._psnr: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()

    def psnr(self, vae, measure: bool = True) -> float | None:
        """The measured PSNR in dB (measured now if it wasn't and `measure`)."""
        value = self._psnr.get(vae)
        if value is None and measure:
            value = self._psnr[vae] = measure_bf16_psnr(vae)
            log.info(
                "bf16 VAE decode guard: %.1f dB against fp32 (bf16 %s)",
                value,
                "used under Automatic" if value >= MIN_PSNR else "not used",
            )
        return value

    def passes(self, vae, measure: bool = True) -> bool:
        value = self.psnr(vae, measure)
        return value is not None and value >= MIN_PSNR


def guard_image(size: int) -> torch.Tensor:
    """A deterministic (1, 3, size, size) test image in [-1, 1]: colour ramps, a disc and fine stripes, so the
    latent holds smooth areas, edges and texture the way a picture's does."""
    ramp = torch.linspace(-1, 1, size)
    yy, xx = torch.meshgrid(ramp, ramp, indexing="ij")
    disc = ((xx - 0.2) ** 2 + (yy + 0.1) ** 2 < 0.2).float()
    stripes = torch.sin(xx * size * 0.8) * (yy > 0.4).float()
    image = torch.stack([xx * 0.8 + disc * 0.5, yy * 0.7 - disc * 0.6 + stripes * 0.3, (xx * yy) - stripes * 0.2])
    return image.clamp(-1, 1)[None]


@torch.no_grad()
def measure_bf16_psnr(vae, latent_size: int = 16) -> float:
    """PSNR (dB, 8-bit pixels) of `vae`'s bf16 decode against its fp32 decode of the guard image's latent."""
    scale = 2 ** (len(getattr(vae.config, "block_out_channels", (0,) * 4)) - 1)
    image = guard_image(latent_size * scale).to(vae.device, vae.dtype)
    latent = vae.encode(image).latent_dist.mean
    decode = type(vae).decode.__get__(vae)  # the class's own decode: no bridge or override in the way
    ref = decode(latent).sample.float()
    fast = bf16_decode(vae, decode)(latent).sample.float()
    to_u8 = lambda x: ((x / 2 + 0.5).clamp(0, 1) * 255).round().cpu().numpy()  # noqa: E731
    mse = float(np.mean((to_u8(ref).astype(np.float64) - to_u8(fast)) ** 2))
    if not np.isfinite(mse):
        return 0.0
    return 100.0 if mse == 0 else float(min(100.0, 10 * np.log10(255.0**2 / mse)))  # finite: JSON-safe


def bf16_decode(vae: Any, decode: Callable) -> Callable:
    """`decode` (the VAE's current one, e.g. with the --no-half-vae bridge) run in bf16, the image back in fp32."""

    @functools.wraps(decode)
    def run(z, *args, **kwargs):
        modules = [
            m
            for m in (getattr(vae, "decoder", None), getattr(vae, "post_quant_conv", None))
            if isinstance(m, torch.nn.Module)
        ]
        with torch.no_grad(), hold_bf16(modules), torch.autocast("cpu", dtype=torch.bfloat16):
            out = decode(z, *args, **kwargs)
        return to_fp32(out)

    return run
