"""Shared set-up for benchmarks: models written in A1111 layout into a temp data dir, and timing helpers."""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

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
