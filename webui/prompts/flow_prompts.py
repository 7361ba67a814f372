"""Prompts for FLUX.1 and SD 3/3.5: A1111's weights on the CLIP branches, plain text for T5.

The pipelines' own `encode_prompt` reads every encoder's input as literal text. Easel encodes instead and hands the
pipeline `prompt_embeds` / `pooled_prompt_embeds` (and their negatives):

- T5 gets the plain text (plain.py) through the pipeline's own `_get_t5_prompt_embeds`, at the T5 length in use.
- SD 3/3.5: CLIP-L and CLIP-G are encoded as A1111 encodes SDXL's pair (conditioning.Conditioner: 75-token chunks,
  penultimate layers side by side, weights with the 'Original' mean restored, `BREAK`; textual-inversion
  embeddings are not passed yet); the pooled
  vector is L's and G's projections side by side, from the first chunk without weights, as A1111 pools SDXL. The CLIP
  part is padded to T5's width and put before T5's tokens, as the pipeline does (several chunks make it longer: the
  joint attention takes any length, as Forge's chunked SD 3 prompts).
- FLUX.1 uses CLIP-L only through its pooled vector (the final hidden state at the first end token). A1111's
  weighting scales hidden states after the encoder, which never reaches that vector (in A1111-style UIs, emphasis
  does nothing on FLUX's CLIP branch). Easel scales each weighted token's input embedding (the token embedding,
  before the position embedding is added) by its weight, so the encoder's attention, and the pooled vector, see the
  emphasis; with every weight 1 this is exactly the pipeline's own encoding. FLUX reads one 77-token window, so only
  the first chunk counts, as in diffusers.

Prompt editing and alternation resolve to the text the prompt reads as for the most steps (one encoding per run, as
for T5): per-step switching on these branches is not done.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch
import torch.nn.functional as F

from webui.prompts.chunks import build_chunks
from webui.prompts.conditioning import Conditioner, TextEncoderSpec, pad_to_same_length
from webui.prompts.parser import extract_extra_networks, split_and, texts_per_step
from webui.prompts.plain import plain_text


def weighted_text(prompt: str, steps: int = 20) -> str:
    """The prompt for the CLIP branches: extra-network tags out, `AND` parts joined, editing and alternation resolved
    to the text read for the most steps; attention brackets, weights and `BREAK` kept for the chunker."""
    clean, _ = extract_extra_networks(prompt or "")
    parts = []
    for sub, _weight in split_and(clean):
        texts = texts_per_step(sub, max(1, int(steps)))
        parts.append(Counter(texts).most_common(1)[0][0] if texts else sub)
    return " ".join(p for p in parts if p.strip())


@torch.no_grad()
def flux_pooled(pipe, text: str, emphasis: str = "Original") -> torch.Tensor:
    """CLIP-L's pooled vector [P] for FLUX with A1111 weights on the token embeddings (see the module's notes)."""
    chunk = build_chunks(pipe.tokenizer, text, emphasis=emphasis != "None")[0][0]
    te = pipe.text_encoder
    ids = torch.tensor([chunk.tokens], device=te.device)
    weights = torch.tensor(chunk.multipliers, device=te.device)
    handle = None
    if bool((weights != 1).any()):
        def scale(_module, _inputs, out):
            return out * weights.to(out.dtype)[None, :, None]

        handle = te.get_input_embeddings().register_forward_hook(scale)
    try:
        return te(ids, output_hidden_states=False).pooler_output[0]
    finally:
        if handle is not None:
            handle.remove()


def sd3_conditioner(pipe, emphasis: str = "Original", comma_padding_backtrack: int = 20) -> Conditioner:
    """A Conditioner over SD 3's CLIP-L and CLIP-G (hidden_states[-2], no final norm, both pooled), the layers the
    SD 3 pipeline reads."""
    specs = [TextEncoderSpec(pipe.tokenizer, pipe.text_encoder, -2, final_norm=False, pooled=True),
             TextEncoderSpec(pipe.tokenizer_2, pipe.text_encoder_2, -2, final_norm=False, pooled=True)]
    return Conditioner(pipe, emphasis=emphasis, comma_padding_backtrack=comma_padding_backtrack, specs=specs)


def flow_prompt_kwargs(pipe, *, flux: bool, prompt: str, negative: str | None, steps: int, max_length: int,
                       batch: int, emphasis: str = "Original", comma_padding_backtrack: int = 20) -> dict[str, Any]:
    """The pipeline call's prompt arguments for `batch` images: prompt_embeds and pooled_prompt_embeds, and their
    negatives when `negative` is not None (FLUX's true CFG, SD 3's CFG)."""
    device, dtype = pipe.transformer.device, pipe.transformer.dtype
    texts = [prompt] + ([negative] if negative is not None else [])
    plain = [plain_text(t, steps) for t in texts]
    if flux and negative is not None and not plain[1]:
        plain[1] = " "  # as before: FLUX's true CFG needs a negative to run
    t5 = pipe._get_t5_prompt_embeds(prompt=plain, max_sequence_length=max_length, device=device, dtype=dtype)
    if flux:
        pooled = torch.stack([flux_pooled(pipe, weighted_text(t, steps), emphasis) for t in texts]).to(device, dtype)
        embeds = list(t5)
    else:
        cond = sd3_conditioner(pipe, emphasis, comma_padding_backtrack)
        encoded = [cond.encode_group([weighted_text(t, steps)])[0] for t in texts]
        clips = [c[None] for c, _ in encoded]
        if len(clips) == 2:  # cond and uncond run as one batch: the same number of CLIP tokens
            empty = cond.empty()[0]
            clips[0], clips[1] = pad_to_same_length(clips[0], clips[1], empty)
        width = t5.shape[-1]
        embeds = [torch.cat([F.pad(c[0].to(device, dtype), (0, width - c.shape[-1])), t5[i]]) for i, c in
                  enumerate(clips)]
        pooled = torch.stack([p for _, p in encoded]).to(device, dtype)  # type: ignore[misc]
    out: dict[str, Any] = {"prompt_embeds": embeds[0][None].repeat(batch, 1, 1),
                           "pooled_prompt_embeds": pooled[0][None].repeat(batch, 1)}
    if negative is not None:
        out.update(negative_prompt_embeds=embeds[1][None].repeat(batch, 1, 1),
                   negative_pooled_prompt_embeds=pooled[1][None].repeat(batch, 1))
    return out
