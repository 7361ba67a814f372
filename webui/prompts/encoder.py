"""Text → CLIP conditioning, with A1111's clip skip.

Encoded here rather than by the pipeline's `encode_prompt`: diffusers 0.42's clip-skip path reaches for
`text_encoder.text_model`, which transformers 5 removed, and A1111's semantics (hidden layer −N, then the final
layer norm) are clearer written out.
"""

from __future__ import annotations

import torch


def _final_norm(text_encoder):
    return getattr(text_encoder, "final_layer_norm", None) or text_encoder.text_model.final_layer_norm


@torch.no_grad()
def encode_texts(pipe, texts: list[str], clip_skip: int = 1) -> torch.Tensor:
    """[len(texts), 77, hidden]. clip_skip 1 = the last layer (A1111's CLIP_stop_at_last_layers).
    Each text is encoded on its own, as diffusers' encode_prompt does, so the fp32 path is bit-identical to it."""
    te = pipe.text_encoder
    outs = []
    for text in texts:
        ids = pipe.tokenizer(
            text, padding="max_length", max_length=pipe.tokenizer.model_max_length, truncation=True, return_tensors="pt"
        ).input_ids.to(te.device)
        if clip_skip <= 1:
            outs.append(te(ids)[0])
        else:
            hidden = te(ids, output_hidden_states=True).hidden_states
            outs.append(_final_norm(te)(hidden[-clip_skip]))
    return torch.cat(outs).to(dtype=pipe.unet.dtype)
