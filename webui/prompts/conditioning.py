"""Prompts → per-step conditioning tensors, with A1111's semantics.

A `Conditioner` turns texts into embeddings the way A1111's FrozenCLIPEmbedderWithCustomWords does:
chunks of 75 tokens (chunks.py), each encoded as [BOS] + 75 + [EOS] through the text encoder(s) with clip skip,
token embeddings scaled by their weights and the chunk's mean restored, chunks concatenated → [77·k, D].
Textual-inversion vectors replace the token embeddings of their trigger word (via a forward hook on the input
embedding layer: transformers 5's CLIPTextModel.forward takes no `inputs_embeds`).

`build_schedule` does it for a batch of prompts over the steps: extra-network tags out, AND split, prompt editing and
alternation resolved, each distinct chunk encoded once. `Schedule.at(step)` gives the tensor for a 0-based sampler
step. SDXL pipelines (text_encoder_2) get both encoders' penultimate layers side by side and the pooled output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from webui.prompts.chunks import CHUNK, Chunk, EmbeddingWords, build_chunks
from webui.prompts.editing import entry_for_step, prompt_schedule
from webui.prompts.parser import extract_extra_networks, split_and

EMPHASIS_MODES = ("Original", "No norm", "None")


@dataclass
class TextEncoderSpec:
    tokenizer: Any
    model: torch.nn.Module
    layer: int | None  # hidden_states index, or None for the model's last (final-normed) output
    final_norm: bool  # apply the final layer norm to hidden_states[layer]
    pooled: bool = False  # this encoder supplies the pooled output (SDXL's text_encoder_2)

    def run(self, ids: torch.Tensor):
        out = self.model(ids, output_hidden_states=self.layer is not None)
        if self.layer is None:
            z = out.last_hidden_state
        else:
            z = out.hidden_states[self.layer]
            if self.final_norm:
                norm = getattr(self.model, "final_layer_norm", None)
                z = (norm if norm is not None else self.model.text_model.final_layer_norm)(z)
        return z, (out.text_embeds if self.pooled else None)


def text_encoders(pipe, clip_skip: int = 1) -> list[TextEncoderSpec]:
    """SD 1.x: hidden_states[-clip_skip] + final layer norm (A1111's CLIP_stop_at_last_layers).
    SD 2.x (OpenCLIP, recognised by its tokenizer padding with "!" rather than EOS): the encoder's output; A1111
    ignores clip skip there. SDXL: both encoders' hidden_states[-2] without the final norm, pooled from
    text_encoder_2; clip skip ignored too (A1111's `sdxl_clip_l_skip` is off by default)."""
    te2 = getattr(pipe, "text_encoder_2", None)
    if te2 is None:
        tok = pipe.tokenizer
        open_clip = tok.pad_token_id is not None and tok.pad_token_id != tok.eos_token_id
        layer = -clip_skip if clip_skip > 1 and not open_clip else None
        return [TextEncoderSpec(pipe.tokenizer, pipe.text_encoder, layer, final_norm=True)]
    specs = []
    if getattr(pipe, "text_encoder", None) is not None:
        specs.append(TextEncoderSpec(pipe.tokenizer, pipe.text_encoder, -2, final_norm=False))
    tok2 = getattr(pipe, "tokenizer_2", None) or pipe.tokenizer
    specs.append(TextEncoderSpec(tok2, te2, -2, final_norm=False, pooled=True))
    return specs


def _vectors_for(embeddings: dict | None, specs: list[TextEncoderSpec]) -> list[dict[str, torch.Tensor]]:
    """Per encoder: word → [n, D]. A value may be one tensor, or a dict keyed like A1111's SDXL embeddings
    ("clip_l", "clip_g"). Vectors whose width doesn't fit an encoder are left out for it."""
    keys = ["clip_l", "clip_g"] if len(specs) == 2 else ["clip_l"]
    per: list[dict[str, torch.Tensor]] = [{} for _ in specs]
    for word, value in (embeddings or {}).items():
        for i, spec in enumerate(specs):
            v = value.get(keys[i]) if isinstance(value, dict) else value
            if v is None:
                continue
            v = v.reshape(-1, v.shape[-1])
            if v.shape[-1] == spec.model.get_input_embeddings().embedding_dim:
                per[i][word] = v
    return per


class Conditioner:
    """Encodes texts for one pipeline and one set of options; caches every distinct chunk's encoder output, so
    prompt editing, alternation and a hires pass re-encode nothing they already have."""

    def __init__(
        self,
        pipe,
        clip_skip: int = 1,
        embeddings: dict | None = None,
        *,
        emphasis: str = "Original",
        comma_padding_backtrack: int = 20,
        specs: list[TextEncoderSpec] | None = None,
    ):
        if emphasis not in EMPHASIS_MODES:
            raise ValueError(f"emphasis must be one of {EMPHASIS_MODES}, not {emphasis!r}")
        self.specs = specs or text_encoders(pipe, clip_skip)  # `specs`: another family's CLIP branches (SD 3)
        self.is_sdxl = getattr(pipe, "text_encoder_2", None) is not None
        self.tokenizer = self.specs[0].tokenizer
        unet = getattr(pipe, "unet", None)
        self.dtype = unet.dtype if unet is not None else self.specs[0].model.dtype
        self.emphasis = emphasis
        self.backtrack = comma_padding_backtrack
        self.vectors = _vectors_for(embeddings, self.specs)
        self.words = EmbeddingWords(self.tokenizer, {w: v.shape[0] for w, v in self.vectors[0].items()})
        self.used_embeddings: set[str] = set()  # words met so far, for the infotext's "TI hashes"
        self._chunks: dict[str, tuple[list[Chunk], int]] = {}
        self._raw: list[dict[tuple, tuple[torch.Tensor, torch.Tensor | None]]] = [{} for _ in self.specs]

    def chunks(self, text: str) -> list[Chunk]:
        if text not in self._chunks:
            self._chunks[text] = build_chunks(
                self.tokenizer,
                text,
                words=self.words,
                comma_padding_backtrack=self.backtrack,
                emphasis=self.emphasis != "None",
            )
        chunks = self._chunks[text][0]
        self.used_embeddings.update(w for c in chunks for _, w, _ in c.fixes)
        return chunks

    @torch.no_grad()
    def _encode_missing(self, chunks: list[Chunk]) -> None:
        for spec, cache, vectors in zip(self.specs, self._raw, self.vectors):
            todo = list({c.key(): c for c in chunks if c.key() not in cache}.values())
            if not todo:
                continue
            model = spec.model
            ids = torch.tensor([c.tokens for c in todo], device=model.device)
            pad, eos = spec.tokenizer.pad_token_id, spec.tokenizer.eos_token_id
            if pad is not None and pad != eos:  # SD2/SDXL-G: pad after the first EOS
                for row, c in enumerate(todo):
                    ids[row, c.tokens.index(eos) + 1 :] = pad
            fixes = [(row, off, vectors[w][:n]) for row, c in enumerate(todo) for off, w, n in c.fixes if w in vectors]
            handle = None
            if fixes:

                def splice(_module, _inputs, out):
                    out = out.clone()
                    for row, off, vec in fixes:
                        out[row, off : off + vec.shape[0]] = vec.to(out.device, out.dtype)
                    return out

                handle = model.get_input_embeddings().register_forward_hook(splice)
            try:
                z, pooled = spec.run(ids)
            finally:
                if handle is not None:
                    handle.remove()
            for row, c in enumerate(todo):
                cache[c.key()] = (z[row].float(), None if pooled is None else pooled[row].float())

    @torch.no_grad()
    def encode_group(self, texts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """[(cond [77·k, D], pooled [P] | None)] for texts A1111 encodes in one batch (one prompt's schedule):
        padded to the same number of chunks with empty chunks, and the emphasis mean taken over the whole batch,
        chunk by chunk, per encoder — A1111 does exactly that, so an edited prompt's halves influence each other's
        normalisation."""
        per_text = [self.chunks(t) for t in texts]
        empty = self.chunks("")[0]
        k = max(len(c) for c in per_text)
        columns = [[c[i] if i < len(c) else empty for c in per_text] for i in range(k)]
        self._encode_missing([c for col in columns for c in col])
        outs: list[list[torch.Tensor]] = [[] for _ in texts]
        for col in columns:
            parts = [self._weighted(col, cache) for cache in self._raw]
            for j in range(len(texts)):
                outs[j].append(torch.cat([p[j] for p in parts], dim=-1))
        # the pooled output of every encoder that gives one, side by side (SDXL: G only; SD 3: L then G)
        pooling = [cache for spec, cache in zip(self.specs, self._raw) if spec.pooled]
        pooled = [torch.cat([cache[c[0].key()][1] for cache in pooling]) if pooling else None for c in per_text]
        return [(torch.cat(o).to(self.dtype), None if p is None else p.to(self.dtype)) for o, p in zip(outs, pooled)]

    def _weighted(self, col: list[Chunk], cache) -> list[torch.Tensor]:
        """One chunk position for a batch of texts: z·w, then (Original) × mean(z)/mean(z·w) over the batch.
        Identical chunks are computed once; their multiplicity still counts in the means."""
        distinct: dict[tuple, Chunk] = {}
        counts: dict[tuple, int] = {}
        for c in col:
            distinct.setdefault(c.key(), c)
            counts[c.key()] = counts.get(c.key(), 0) + 1
        z = {key: cache[key][0] for key in distinct}
        zw = {
            key: z[key] * torch.tensor(c.multipliers, dtype=z[key].dtype, device=z[key].device)[:, None]
            for key, c in distinct.items()
        }
        if self.emphasis == "Original":
            n = sum(counts.values())
            if len(distinct) == 1:
                key = next(iter(distinct))
                factor = z[key].mean() / zw[key].mean()
            else:
                original = sum(z[key].mean() * counts[key] for key in distinct) / n
                factor = original / (sum(zw[key].mean() * counts[key] for key in distinct) / n)
            if torch.isfinite(factor) and factor != 0:  # a mean of exactly 0 would make A1111 return NaNs
                zw = {key: v * factor for key, v in zw.items()}
        return [zw[c.key()] for c in col]

    def empty(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The encoding of "" (one chunk): what A1111 pads a shorter prompt/negative pair with."""
        return self.encode_group([""])[0]


@dataclass
class Track:
    """One (sub-)prompt over the steps: conds[i] applies through 1-based step ends[i]."""

    text: str
    ends: list[int]
    texts: list[str]
    conds: list[torch.Tensor]
    pooled: list[torch.Tensor | None]

    def index(self, step: int) -> int:
        """The entry a 0-based sampler step uses (see editing.entry_for_step)."""
        return entry_for_step(self.ends, step)


@dataclass
class Schedule:
    """Conditioning over the steps for a batch of prompts.

    `groups[b]` lists (track, weight) for prompt b: one entry of weight 1 unless the prompt uses AND (or ends in
    `:weight`), which is composable diffusion (`is_composable`). `at(step)` stacks one row per track: for a plain
    batch that is [B, T, D] with row b for prompt b (B = number of distinct prompts when `tracks` were shared:
    use `rows_for_batch`)."""

    tracks: list[Track]
    groups: list[list[tuple[int, float]]]
    empty: torch.Tensor  # [77, D]
    empty_pooled: torch.Tensor | None = None
    extra_networks: list[list] = field(default_factory=list)  # per prompt: its ExtraNetworkTags

    @property
    def is_static(self) -> bool:
        return all(len(t.ends) == 1 for t in self.tracks)

    @property
    def is_composable(self) -> bool:
        return any(len(g) != 1 or g[0][1] != 1.0 for g in self.groups)

    @property
    def max_chunks(self) -> int:
        return max(c.shape[0] for t in self.tracks for c in t.conds) // (CHUNK + 2)

    def key(self, step: int) -> tuple[int, ...]:
        """Changes exactly when `at(step)` does."""
        return tuple(t.index(step) for t in self.tracks)

    def texts_at(self, step: int) -> list[str]:
        return [t.texts[t.index(step)] for t in self.tracks]

    def at(self, step: int) -> torch.Tensor:
        """[tracks, T, D] for the 0-based `step`; tracks of different lengths are brought to the longest by repeating
        their last vector (A1111's stack_conds)."""
        return _stack([t.conds[t.index(step)] for t in self.tracks])

    def pooled_at(self, step: int) -> torch.Tensor | None:
        pooled = [t.pooled[t.index(step)] for t in self.tracks]
        return None if pooled[0] is None else torch.stack(pooled)

    def rows_for_batch(self) -> list[int]:
        """For a non-composable schedule: the track index of each prompt."""
        return [g[0][0] for g in self.groups]


def _stack(conds: list[torch.Tensor]) -> torch.Tensor:
    longest = max(c.shape[0] for c in conds)
    return torch.stack(
        [c if c.shape[0] == longest else torch.cat([c, c[-1:].expand(longest - c.shape[0], -1)]) for c in conds]
    )


def pad_to_same_length(a: torch.Tensor, b: torch.Tensor, empty: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, T, D] pair → the shorter padded with copies of `empty` ([77, D], the encoding of "") to the other's T
    (A1111's pad_cond_uncond, infotext "Pad conds: True")."""

    def pad(x: torch.Tensor, tokens: int) -> torch.Tensor:
        missing = tokens - x.shape[1]
        reps = -(-missing // empty.shape[0])
        filler = empty.to(x.device, x.dtype).repeat(reps, 1)[:missing]
        return torch.cat([x, filler.unsqueeze(0).expand(x.shape[0], -1, -1)], dim=1)

    if a.shape[1] < b.shape[1]:
        a = pad(a, b.shape[1])
    elif b.shape[1] < a.shape[1]:
        b = pad(b, a.shape[1])
    return a, b


def build_schedule(
    pipe,
    prompts: list[str],
    steps: int,
    clip_skip: int = 1,
    embeddings: dict | None = None,
    *,
    negative: bool = False,
    hires_steps: int | None = None,
    use_old_scheduling: bool = False,
    conditioner: Conditioner | None = None,
    **conditioner_options,
) -> Schedule:
    """The conditioning of `prompts` over `steps` sampler steps (the number of model calls: A1111 doubles it for
    second-order samplers). Positive prompts lose their `<kind:…>` tags (kept in `extra_networks`) and are split on
    AND; negative prompts are used as written, as in A1111. A negative that is "" on SDXL is all zeros (A1111's
    zeroed empty negative). Pass a `conditioner` to share its cache (say, with the hires pass)."""
    cond = conditioner or Conditioner(pipe, clip_skip, embeddings, **conditioner_options)
    tracks: dict[str, int] = {}
    track_list: list[Track] = []
    groups, networks = [], []
    for prompt in prompts:
        subs = [(prompt, 1.0)]
        if not negative:
            prompt, tags = extract_extra_networks(prompt)
            networks.append(tags)
            subs = split_and(prompt)
        group = []
        for text, weight in subs:
            if text not in tracks:
                tracks[text] = len(track_list)
                track_list.append(
                    _track(
                        cond,
                        text,
                        steps,
                        hires_steps,
                        use_old_scheduling,
                        zero=negative and cond.is_sdxl and text == "",
                    )
                )
            group.append((tracks[text], weight))
        groups.append(group)
    empty, empty_pooled = cond.empty()
    return Schedule(track_list, groups, empty, empty_pooled, networks)


def _track(cond: Conditioner, text: str, steps: int, hires_steps, old: bool, zero: bool) -> Track:
    schedule = prompt_schedule(text, steps, hires_steps, old)
    texts = [t for _, t in schedule]
    encoded = cond.encode_group(texts)
    if zero:
        encoded = [(torch.zeros_like(c), None if p is None else torch.zeros_like(p)) for c, p in encoded]
    return Track(text, [e for e, _ in schedule], texts, [c for c, _ in encoded], [p for _, p in encoded])
