"""Sample images during training: the pipeline with the adapter being trained, a fixed seed, saved atomically."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from webui.fsutil import atomic_write_bytes


@torch.no_grad()
def sample_image(pipe, prompt: str, *, size: int, steps: int, seed: int, scheduler_config: dict, cfg: float = 7.0):
    """One image from `prompt` (A1111-style conditioning, Euler), leaving the pipeline's scheduler as it was."""
    from diffusers import EulerDiscreteScheduler

    from webui.prompts.encoder import encode_texts

    modules = [m for m in (pipe.unet, pipe.text_encoder) if m.training]
    for m in modules:
        m.eval()
    previous = pipe.scheduler
    try:
        pipe.scheduler = EulerDiscreteScheduler.from_config(scheduler_config)
        cond = encode_texts(pipe, [prompt, ""])
        g = torch.Generator("cpu").manual_seed(seed)
        return pipe(
            prompt_embeds=cond[:1],
            negative_prompt_embeds=cond[1:],
            num_inference_steps=steps,
            guidance_scale=cfg,
            height=size,
            width=size,
            generator=g,
            output_type="pil",
        ).images[0]
    finally:
        pipe.scheduler = previous
        for m in modules:
            m.train()


def save_png(image, path: Path) -> Path:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return path
