"""A prompt as plain words, for text encoders that take no A1111 syntax: T5 in FLUX.1 and SD 3/3.5 (their CLIP
branches get A1111's weights: flow_prompts.py). Forge and ComfyUI hand T5 the text; A1111's brackets, weights,
`BREAK`, `AND` and `<lora:…>` tags would otherwise reach it as literal tokens."""

from __future__ import annotations

import re
from collections import Counter

from webui.prompts.parser import BREAK, extract_extra_networks, parse_attention, split_and, texts_per_step

_SPACES = re.compile(r"\s+")
_BEFORE_PUNCT = re.compile(r"\s+([,.;:!?])")


def plain_text(prompt: str, steps: int = 20) -> str:
    """`prompt` without the syntax: extra-network tags removed, `AND` parts joined (their weights dropped), prompt
    editing and alternation resolved to the text the prompt reads as for the most steps (the earliest such text on
    a tie: one text is encoded for the whole run), attention brackets and weights dropped (escaped brackets stay as
    characters), `BREAK` a space."""
    clean, _ = extract_extra_networks(prompt or "")
    words = []
    for sub, _weight in split_and(clean):
        texts = texts_per_step(sub, max(1, int(steps)))
        text = Counter(texts).most_common(1)[0][0] if texts else sub
        words.append("".join(" " if (frag, w) == BREAK else frag for frag, w in parse_attention(text)))
    return _BEFORE_PUNCT.sub(r"\1", _SPACES.sub(" ", " ".join(words))).strip()


def token_counts(
    model,
    prompt: str,
    steps: int = 20,
    *,
    negative: bool = False,
    t5_max_length: int = 0,
    embeddings: dict[str, int] | None = None,
    clip_tokenizer=None,
) -> dict:
    """The prompt box's counts for the loaded model: {"clip": {"tokens", "max"}, "t5": {"tokens", "max"} or None}.
    CLIP counts as A1111's counter (chunks of 75); T5 (FLUX, SD 3/3.5) counts the plain text against its length."""
    from webui.prompts.chunks import token_count

    pipe = model.pipeline if model is not None else None
    tok = pipe.tokenizer if pipe is not None else clip_tokenizer
    n, limit = token_count(tok, prompt or "", steps=steps, is_positive=not negative, embeddings=embeddings)
    out: dict = {"clip": {"tokens": n, "max": limit}, "t5": None}
    family = getattr(getattr(getattr(model, "probe", None), "family", None), "value", None)
    if family in ("flux", "sd3"):
        from webui.models.family_flow import t5_max_length as length

        assert pipe is not None  # a family is known only with a model
        t5_tok = pipe.tokenizer_2 if family == "flux" else pipe.tokenizer_3
        n5, max5 = t5_token_count(t5_tok, prompt or "", length(model, t5_max_length), steps)
        out["t5"] = {"tokens": n5, "max": max5}
    return out


def t5_token_count(tokenizer, prompt: str, max_length: int, steps: int = 20) -> tuple[int, int]:
    """(tokens, max_length) for the T5 branch: the plain text's SentencePiece tokens without the closing </s>, and
    the T5 sequence length in use (what is past max_length - 1 tokens is cut off)."""
    ids = tokenizer(plain_text(prompt, steps), add_special_tokens=False).input_ids
    return len(ids), int(max_length)
