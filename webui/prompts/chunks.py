"""Weighted text → 75-token chunks, as A1111's FrozenCLIPEmbedderWithCustomWords.tokenize_line builds them.

Tokenizer only (no model): the UI's token counter uses this too.

- Every (fragment, weight) from `parse_attention` is tokenized on its own, without BOS/EOS.
- Tokens fill chunks of 75. `BREAK` closes the current chunk (padding it). When a chunk is full and the last comma is
  at most `comma_padding_backtrack` tokens back, the tokens after that comma move to the next chunk.
- A textual-inversion word (matched on its token ids, like A1111) takes as many positions as it has vectors, never
  split across chunks; its positions are recorded as fixes for the encoder to fill in.
- Each chunk becomes [BOS] + 75 tokens + [EOS], padded with EOS (the encoder swaps in its own pad id after the first
  EOS when it differs, as SD2's and SDXL's OpenCLIP tokenizers do).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from webui.prompts.editing import prompt_schedule
from webui.prompts.parser import extract_extra_networks, parse_attention, split_and

CHUNK = 75
PLACEHOLDER = 0  # token id under an embedding's vectors (A1111 uses 0 too); the encoder overwrites its embedding


@dataclass
class Chunk:
    tokens: list[int]  # CHUNK + 2 ids: BOS, 75, EOS
    multipliers: list[float]  # one per token
    fixes: list[tuple[int, str, int]] = field(default_factory=list)  # (offset, embedding word, vector count)

    def key(self) -> tuple:
        return tuple(self.tokens), tuple((o, w) for o, w, _ in self.fixes)


class EmbeddingWords:
    """Textual-inversion trigger words, looked up by their token ids (A1111's EmbeddingDatabase.ids_lookup)."""

    def __init__(self, tokenizer, vector_counts: dict[str, int] | None):
        self.by_first: dict[int, list[tuple[list[int], str, int]]] = {}
        if not vector_counts:
            return
        words = list(vector_counts)
        for word, ids in zip(words, tokenizer(words, truncation=False, add_special_tokens=False)["input_ids"]):
            if ids:
                self.by_first.setdefault(ids[0], []).append((ids, word, min(CHUNK, vector_counts[word])))
        for entries in self.by_first.values():
            entries.sort(key=lambda e: len(e[0]), reverse=True)

    def match(self, tokens: list[int], pos: int) -> tuple[str, int, int] | None:
        """(word, tokens it spans, vectors) when an embedding's ids start at `pos`."""
        for ids, word, n in self.by_first.get(tokens[pos], ()):
            if tokens[pos : pos + len(ids)] == ids:
                return word, len(ids), n
        return None


def tokenize_fragments(tokenizer, texts: list[str]) -> list[list[int]]:
    return tokenizer(texts, truncation=False, add_special_tokens=False, verbose=False)["input_ids"]


def build_chunks(
    tokenizer,
    text: str,
    *,
    words: EmbeddingWords | None = None,
    comma_padding_backtrack: int = 20,
    emphasis: bool = True,
) -> tuple[list[Chunk], int]:
    """(chunks, token count). The count is what A1111's counter shows: 75 for every chunk but the last, plus the
    tokens in the last one."""
    parsed = parse_attention(text) if emphasis else [(text, 1.0)]
    tokenized = tokenize_fragments(tokenizer, [t for t, _ in parsed])
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    comma = _comma_id(tokenizer)
    chunks: list[Chunk] = []
    toks: list[int] = []
    mults: list[float] = []
    fixes: list[tuple[int, str, int]] = []
    count = 0
    last_comma = -1

    def close(is_last: bool = False) -> None:
        nonlocal toks, mults, fixes, count, last_comma
        count += len(toks) if is_last else CHUNK
        pad = CHUNK - len(toks)
        chunks.append(
            Chunk(
                [bos, *toks, *[eos] * pad, eos], [1.0, *mults, *[1.0] * pad, 1.0], [(o + 1, w, n) for o, w, n in fixes]
            )
        )
        toks, mults, fixes, last_comma = [], [], [], -1

    for ids, (frag, weight) in zip(tokenized, parsed):
        if frag == "BREAK" and weight == -1:
            close()
            continue
        pos = 0
        while pos < len(ids):
            token = ids[pos]
            if token == comma:
                last_comma = len(toks)
            elif (
                comma_padding_backtrack
                and len(toks) == CHUNK
                and last_comma != -1
                and len(toks) - last_comma <= comma_padding_backtrack
            ):
                cut = last_comma + 1
                moved_t, moved_m = toks[cut:], mults[cut:]
                moved_f = [(o - cut, w, n) for o, w, n in fixes if o >= cut]
                toks, mults, fixes = toks[:cut], mults[:cut], [f for f in fixes if f[0] < cut]
                close()
                toks, mults, fixes = moved_t, moved_m, moved_f
            if len(toks) == CHUNK:
                close()
            found = words.match(ids, pos) if words else None
            if found is None:
                toks.append(token)
                mults.append(weight)
                pos += 1
                continue
            word, span, n = found
            if len(toks) + n > CHUNK:
                close()
            fixes.append((len(toks), word, n))
            toks += [PLACEHOLDER] * n
            mults += [weight] * n
            pos += span
    if toks or not chunks:
        close(is_last=True)
    return chunks, count


def token_count(
    tokenizer,
    prompt: str,
    *,
    steps: int = 20,
    is_positive: bool = True,
    embeddings: dict[str, int] | None = None,
    comma_padding_backtrack: int = 20,
) -> tuple[int, int]:
    """The prompt box counter: (tokens, max_length) with max_length growing in chunks of 75 ("80/150").
    The longest text the prompt reads as at any step counts (after extra-network tags and AND, as A1111's UI)."""
    texts = [prompt]
    if is_positive:
        clean, _ = extract_extra_networks(prompt)
        texts = [sub for sub, _ in split_and(clean)]
    words = EmbeddingWords(tokenizer, embeddings)
    best = 0
    for text in dict.fromkeys(t for sub in texts for _, t in prompt_schedule(sub, steps)):
        best = max(best, build_chunks(tokenizer, text, words=words, comma_padding_backtrack=comma_padding_backtrack)[1])
    return best, math.ceil(max(best, 1) / CHUNK) * CHUNK


def _comma_id(tokenizer) -> int | None:
    """The id of "," (a word end). get_vocab() copies the whole 49k-entry vocabulary (~50 ms), so ask for the one
    token: a dictionary look-up (under 1 µs), so nothing is cached."""
    ids = tokenizer.convert_tokens_to_ids([",</w>"])
    return ids[0] if ids and ids[0] != tokenizer.unk_token_id else None
