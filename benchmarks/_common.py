"""Shared set-up for benchmarks: models written in A1111 layout into a temp data dir, and timing helpers."""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# A mid-size SD-shaped model: SD 1.x block structure at reduced width (the UNet is tests/factories.mid_unet, ~81M
# parameters), with this VAE and a 4-layer CLIP text encoder.
MID = dict(cross_dim=768, vae_channels=(64, 128, 256, 256))


def write_model(kind: str, folder: Path) -> Path:
    from tests.factories import TINY_EASEL_CONFIG, tiny_components
    from webui.models.ldm_keys import save_a1111_checkpoint

    if kind == "tiny":
        unet, vae, te = tiny_components(0)
        cfg = TINY_EASEL_CONFIG
    else:
        unet, vae, te = mid_components()
        cfg = {"native_size": 256}
    folder.mkdir(parents=True, exist_ok=True)
    return save_a1111_checkpoint(folder / f"{kind}.safetensors", unet, vae, te, easel_config=cfg)


def mid_components():
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel

    from tests.factories import mid_unet

    unet = mid_unet(0)  # seeds torch with 0, as before
    vae = AutoencoderKL(
        block_out_channels=MID["vae_channels"],
        layers_per_block=2,
        latent_channels=4,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
    )
    te = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=4,
            num_attention_heads=12,
            hidden_act="quick_gelu",
            projection_dim=768,
        )
    )
    return unet.eval(), vae.eval(), te.eval()


def temp_data_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="easel-bench-"))


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def median(xs: list[float]) -> float:
    return statistics.median(xs)


@contextlib.contextmanager
def held_bf16(unet, switch):
    """The UNet's bf16 weights (prepacked convolutions) as a job holds them for a pipeline call. `bf16_weights`
    holds only a UNet whose autocast switch is on, which the runtime turns on for the whole job: a benchmark that
    enters it with the switch off times autocast alone, re-rounding every weight at every step. The switch is off
    again inside the block (each torch side turns it on for its own call)."""
    import torch

    from webui.models.precision import bf16_weights

    switch.enabled = True
    try:
        with torch.no_grad(), bf16_weights(SimpleNamespace(unet=unet)) as n:
            assert n > 0, "no weights held"
            switch.enabled = False
            yield
    finally:
        switch.enabled = False


def rotated(sides: dict, rounds: int, arg) -> dict[str, list[float]]:
    """Seconds per call of each side: every round calls each side once, `sides[name](arg(round))`, the first side
    rotating so no side always runs after the same one."""
    names = list(sides)
    times: dict[str, list[float]] = {n: [] for n in names}
    for i in range(rounds):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            t0 = time.perf_counter()
            sides[name](arg(i))
            times[name].append(time.perf_counter() - t0)
    return times


def print_ratios(times: dict[str, list[float]], base: str, unit: str = "s/step") -> None:
    """Each side's median and its median ratio against `base` over the rounds (range in brackets)."""
    width = max(len(n) for n in times) + 2
    for name, t in times.items():
        ratios = [b / x for b, x in zip(times[base], t)]
        print(
            f"  {name:{width}s} {statistics.median(t):.3f} {unit}  ×{statistics.median(ratios):.2f} against {base} "
            f"({min(ratios):.2f}–{max(ratios):.2f})",
            flush=True,
        )
