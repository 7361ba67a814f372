"""IP-Adapter on FLUX.1 (XLabs' `ip_adapter.safetensors`, read and renamed by adapter.read_adapter) through
diffusers' FluxIPAdapterMixin: `load_ip_adapter` puts FluxIPAdapterAttnProcessor on the double blocks and the
ImageProjection as the transformer's `encoder_hid_proj`; FluxPipeline takes the image embeddings as
`ip_adapter_image_embeds` and, for true CFG, `negative_ip_adapter_image_embeds`."""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image

from webui.extensions.api import ScriptError

from . import adapter


def embed_pair(encoder: Any, image: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
    """(image prompt, negative) image_embeds [1, dim]: the negative is a black image's, as FluxPipeline makes it
    when it is given none."""
    return encoder.embed(image), encoder.embed(Image.new("RGB", image.size, 0))


def apply(call: Any, units: list, adapters: list[dict], embeds: list[tuple]) -> tuple[Any, dict]:
    if any(u.mask is not None for u in units):
        raise ScriptError(
            "IP-Adapter masks are not available on FLUX.1 (diffusers' FLUX IP-Adapter attention has no mask): "
            "send the unit without one"
        )
    pipe = adapter.load(call, adapters, flux=True)
    adapter.set_scales(pipe, units, 0.0)
    kwargs = dict(call.kwargs)
    device, dtype = pipe.transformer.device, pipe.transformer.dtype
    # [1, 1, dim] per adapter (one image each): the pipeline repeats it for every image of the batch
    kwargs["ip_adapter_image_embeds"] = [cond[:, None].to(device, dtype) for cond, _ in embeds]
    kwargs["negative_ip_adapter_image_embeds"] = [neg[:, None].to(device, dtype) for _, neg in embeds]
    return pipe, kwargs
