"""Prompts for FLUX.1 and SD 3/3.5: A1111's weights on the CLIP branches, plain text for T5.

The pipelines' own `encode_prompt` reads every encoder's input as literal text. Easel encodes instead and hands the
pipeline `prompt_embeds` / `pooled_prompt_embeds` (and their negatives):

- T5 gets the plain text (plain.py) through the pipeline's own `_get_t5_prompt_embeds`, at the T5 length in use.
- SD 3/3.5: CLIP-L and CLIP-G are encoded as A1111 encodes SDXL's pair (conditioning.Conditioner: 75-token chunks,
  penultimate layers side by side, weights with the 'Original' mean restored, `BREAK`, textual inversion with
  SDXL-style {clip_l, clip_g} embeddings); the pooled
  vector is L's and G's projections side by side, from the first chunk without weights, as A1111 pools SDXL. The CLIP
  part is padded to T5's width and put before T5's tokens, as the pipeline does (several chunks make it longer: the
  joint attention takes any length, as Forge's chunked SD 3 prompts).
- FLUX.1 uses CLIP-L only through its pooled vector (the final hidden state at the first end token). A1111's
  weighting scales hidden states after the encoder, which never reaches that vector (in A1111-style UIs, emphasis
  does nothing on FLUX's CLIP branch). Easel scales each weighted token's input embedding (the token embedding,
  before the position embedding is added) by its weight, so the encoder's attention, and the pooled vector, see the
  emphasis; with every weight 1 this is exactly the pipeline's own encoding. FLUX reads one 77-token window, so only
  the first chunk counts, as in diffusers.

Prompt editing and alternation switch the CLIP branches' text per step, as A1111 does (each distinct text encoded
once; the transformer's inputs swapped at each step through the runtime's `replaced_inputs`); T5 reads the text the
prompt has for the most steps, one encoding per run.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
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


def sd3_conditioner(
    pipe, emphasis: str = "Original", comma_padding_backtrack: int = 20, embeddings: dict | None = None
) -> Conditioner:
    """A Conditioner over SD 3's CLIP-L and CLIP-G (hidden_states[-2], no final norm, both pooled), the layers the
    SD 3 pipeline reads; `embeddings`: textual inversion as for SDXL ({"clip_l", "clip_g"} vectors)."""
    specs = [
        TextEncoderSpec(pipe.tokenizer, pipe.text_encoder, -2, final_norm=False, pooled=True),
        TextEncoderSpec(pipe.tokenizer_2, pipe.text_encoder_2, -2, final_norm=False, pooled=True),
    ]
    return Conditioner(
        pipe, embeddings=embeddings, emphasis=emphasis, comma_padding_backtrack=comma_padding_backtrack, specs=specs
    )


def weighted_texts(prompt: str, steps: int) -> list[str]:
    """The CLIP branches' text for each 0-based step: prompt editing and alternation resolved per step (A1111's
    schedule over `steps`), tags out, `AND` parts joined, weights kept."""
    clean, _ = extract_extra_networks(prompt or "")
    n = max(1, int(steps))
    parts = [texts_per_step(sub, n) or [sub] * n for sub, _weight in split_and(clean)]
    return [" ".join(p[k] for p in parts if p[k].strip()) for k in range(n)]


@dataclass
class StepInputs:
    """One step's CLIP-branch tensors for `batch` images (negatives None without CFG). SD 3: the whole
    prompt_embeds (CLIP part + T5), FLUX: only the pooled vectors (T5 is the same at every step)."""

    pooled: torch.Tensor
    neg_pooled: torch.Tensor | None = None
    embeds: torch.Tensor | None = None
    neg_embeds: torch.Tensor | None = None


@dataclass
class FlowPrompt:
    """The pipeline call's prompt arguments (step 0's tensors) and, when prompt editing or alternation changes the
    CLIP branches' text during the run, each step's tensors with `replace`, the transformer's input rewrite that
    swaps them in (installed by the runtime: webui/models/runtime.py `replaced_inputs`)."""

    kwargs: dict[str, Any]
    flux: bool
    batch: int
    per_step: list[StepInputs] = field(default_factory=list)  # empty: one text for the whole run
    used_embeddings: set[str] = field(default_factory=set)  # textual-inversion words met (SD 3), for "TI hashes"
    _last: float | None = None
    _step: int = -1

    @property
    def static(self) -> bool:
        return len(self.per_step) < 2

    def replace(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The transformer's keyword arguments for the current step: a new timestep value starts the next step
        (FLUX's true CFG calls the transformer twice per step, cond then uncond, at the same timestep)."""
        t = kwargs.get("timestep")
        key = float(t.reshape(-1)[0]) if isinstance(t, torch.Tensor) else None
        if key != self._last:
            self._last, self._step = key, self._step + 1
        step = self.per_step[min(max(self._step, 0), len(self.per_step) - 1)]
        if self.flux:
            given = kwargs.get("pooled_projections")
            if given is self.kwargs["pooled_prompt_embeds"]:
                kwargs["pooled_projections"] = step.pooled
            elif given is not None and given is self.kwargs.get("negative_pooled_prompt_embeds"):
                kwargs["pooled_projections"] = step.neg_pooled
            return kwargs
        rows = kwargs["encoder_hidden_states"].shape[0]
        assert step.embeds is not None
        if rows == 2 * self.batch and step.neg_embeds is not None:  # SD 3's CFG batch: [uncond; cond]
            kwargs["encoder_hidden_states"] = torch.cat([step.neg_embeds, step.embeds])
            kwargs["pooled_projections"] = torch.cat([step.neg_pooled, step.pooled])  # type: ignore[list-item]
        elif rows == self.batch:
            kwargs["encoder_hidden_states"], kwargs["pooled_projections"] = step.embeds, step.pooled
        return kwargs


def flow_prompt_kwargs(pipe, **kw: Any) -> dict[str, Any]:
    """flow_prompt(...).kwargs: the step-0 arguments alone."""
    return flow_prompt(pipe, **kw).kwargs


@torch.no_grad()
def flow_prompt(
    pipe,
    *,
    flux: bool,
    prompt: str,
    negative: str | None,
    steps: int,
    max_length: int,
    batch: int,
    emphasis: str = "Original",
    comma_padding_backtrack: int = 20,
    embeddings: dict | None = None,
) -> FlowPrompt:
    """The pipeline call's prompt arguments for `batch` images: prompt_embeds and pooled_prompt_embeds, and their
    negatives when `negative` is not None (FLUX's true CFG, SD 3's CFG); per-step tensors when editing changes the
    CLIP branches' text. T5 reads the plain text the prompt has for the most steps."""
    device, dtype = pipe.transformer.device, pipe.transformer.dtype
    sides = [prompt] + ([negative] if negative is not None else [])
    plain = [plain_text(t, steps) for t in sides]
    if flux and negative is not None and not plain[1]:
        plain[1] = " "  # as before: FLUX's true CFG needs a negative to run
    t5 = pipe._get_t5_prompt_embeds(prompt=plain, max_sequence_length=max_length, device=device, dtype=dtype)
    schedules = [weighted_texts(t, steps) for t in sides]  # per side, per step
    texts = list(dict.fromkeys(t for sched in schedules for t in sched))
    pooled_of: dict[str, torch.Tensor] = {}
    embeds_of: dict[tuple[int, str], torch.Tensor] = {}
    if flux:
        for t in texts:
            pooled_of[t] = flux_pooled(pipe, t, emphasis).to(device, dtype)
        for side in range(len(sides)):
            for t in set(schedules[side]):
                embeds_of[side, t] = t5[side]
    else:
        cond = sd3_conditioner(pipe, emphasis, comma_padding_backtrack, embeddings)
        encoded = {t: cond.encode_group([t])[0] for t in texts}
        used = set(cond.used_embeddings)
        empty = cond.empty()[0]
        longest = max(c.shape[0] for c, _ in encoded.values())  # cond and uncond, every step: one CLIP length
        width = t5.shape[-1]
        for t, (clip, pooled) in encoded.items():
            if clip.shape[0] < longest:
                clip = pad_to_same_length(clip[None], torch.zeros(1, longest, clip.shape[-1]), empty)[0][0]
            assert pooled is not None
            pooled_of[t] = pooled.to(device, dtype)
            for side in range(len(sides)):
                if t in schedules[side]:
                    embeds_of[side, t] = torch.cat(
                        [F.pad(clip.to(device, dtype), (0, width - clip.shape[-1])), t5[side]]
                    )

    def rows(x: torch.Tensor) -> torch.Tensor:
        return x[None].repeat(batch, *([1] * x.dim()))

    def step_inputs(k: int) -> StepInputs:
        pos, neg = schedules[0][k], (schedules[1][k] if negative is not None else None)
        return StepInputs(
            pooled=rows(pooled_of[pos]),
            neg_pooled=rows(pooled_of[neg]) if neg is not None else None,
            embeds=rows(embeds_of[0, pos]),
            neg_embeds=rows(embeds_of[1, neg]) if neg is not None else None,
        )

    first = step_inputs(0)
    kwargs: dict[str, Any] = {"prompt_embeds": first.embeds, "pooled_prompt_embeds": first.pooled}
    if negative is not None:
        kwargs.update(negative_prompt_embeds=first.neg_embeds, negative_pooled_prompt_embeds=first.neg_pooled)
    out = FlowPrompt(kwargs, flux, batch, used_embeddings=set() if flux else used)
    if any(len(set(sched)) > 1 for sched in schedules):
        out.per_step = [first] + [step_inputs(k) for k in range(1, len(schedules[0]))]
    return out
