from __future__ import annotations

import numpy as np
import pytest
import torch


def render(pipe, prompt: str, *, seed: int = 3, steps: int = 3) -> np.ndarray:
    """What txt2img does, minimal: our own prompt encoding, then the pipeline's denoise loop. uint8 HxWx3."""
    from webui.prompts.encoder import encode_texts

    cond = encode_texts(pipe, [prompt, ""])
    g = torch.Generator("cpu").manual_seed(seed)
    out = pipe(
        prompt_embeds=cond[:1],
        negative_prompt_embeds=cond[1:],
        num_inference_steps=steps,
        guidance_scale=5,
        height=64,
        width=64,
        generator=g,
        output_type="np",
    ).images[0]
    return (out * 255).round().astype(np.int16)


@pytest.fixture
def lora_service(app):
    from webui.lora.catalog import LoraCatalog
    from webui.lora.service import LoraService

    catalog = LoraCatalog([app.paths.lora_dir, app.paths.lycoris_dir], app.hashes)
    return LoraService(catalog)
