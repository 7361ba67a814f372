"""A1111's prompt grammar, as plain functions over strings (no model, no torch).

The order A1111 applies them in, and the one Easel follows:

1. `extract_extra_networks` — `<lora:name:0.8>` and other `<kind:args>` tags are taken out of the (positive) prompt
   and handed to their owners.
2. `split_and` — `AND` splits the prompt into sub-prompts for composable diffusion, each with an optional trailing
   `:weight`.
3. `prompt_schedule` — each sub-prompt becomes the list of texts it reads as over the steps (prompt editing
   `[from:to:when]`, alternation `[a|b]`); see editing.py.
4. `parse_attention` — each of those texts becomes (fragment, weight) pairs: `(x)` ×1.1, `[x]` ÷1.1, `(x:w)`,
   escapes, and BREAK markers. The weights are applied to the token embeddings (conditioning.py).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from webui.prompts.editing import parse_editing, prompt_schedule, texts_per_step

__all__ = [
    "BREAK",
    "ExtraNetworkTag",
    "extract_extra_networks",
    "parse_attention",
    "parse_editing",
    "prompt_schedule",
    "split_and",
    "texts_per_step",
]

BREAK = ("BREAK", -1.0)

# One lexeme each: escaped bracket or backslash, a lone backslash, an opening bracket, a weighted close `:1.2)`,
# a plain close, a run of ordinary text, a colon that is just text.
_ATTENTION = re.compile(
    r"""
    (?P<escaped>\\[()\[\]\\])
  | (?P<backslash>\\)
  | (?P<open>[(\[])
  | :\s*(?P<weight>[+-]?[.\d]+)\s*\)
  | (?P<close>[)\]])
  | (?P<text>[^\\()\[\]:]+|:)
""",
    re.X,
)
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)
_ROUND, _SQUARE = 1.1, 1 / 1.1


def parse_attention(text: str) -> list[tuple[str, float]]:
    """A1111's parse_prompt_attention: the text as (fragment, weight) pairs, neighbours of equal weight merged.

    `BREAK` becomes ("BREAK", -1.0). An unmatched `(` or `[` weights everything after it; an unmatched `)` or `]` is
    literal text; a lone backslash is dropped. (A weight that is not a number, like `(a:1.2.3)`, crashes A1111; here
    the `:1.2.3` stays as text and the `)` closes the bracket normally.)
    """
    res: list[list] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def scale(start: int, factor: float) -> None:
        for item in res[start:]:
            item[1] *= factor

    def add_text(s: str) -> None:
        for i, part in enumerate(_BREAK.split(s)):
            if i:
                res.append(list(BREAK))
            res.append([part, 1.0])

    for m in _ATTENTION.finditer(text):
        if m.group("escaped"):
            res.append([m.group("escaped")[1], 1.0])
        elif m.group("backslash"):
            res.append(["", 1.0])
        elif m.group("open"):
            (round_open if m.group("open") == "(" else square_open).append(len(res))
        elif m.group("weight") is not None and round_open:
            try:
                factor = float(m.group("weight"))
            except ValueError:
                add_text(m.group(0)[:-1])
                scale(round_open.pop(), _ROUND)
            else:
                scale(round_open.pop(), factor)
        elif m.group("close") == ")" and round_open:
            scale(round_open.pop(), _ROUND)
        elif m.group("close") == "]" and square_open:
            scale(square_open.pop(), _SQUARE)
        else:
            add_text(m.group(0))
    for start in round_open:
        scale(start, _ROUND)
    for start in square_open:
        scale(start, _SQUARE)
    if not res:
        return [("", 1.0)]
    merged = [res[0]]
    for item in res[1:]:
        if item[1] == merged[-1][1]:
            merged[-1][0] += item[0]
        else:
            merged.append(item)
    return [(s, w) for s, w in merged]


_AND = re.compile(r"\bAND\b")
_TRAILING_WEIGHT = re.compile(r"^(.*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$", re.S)


def split_and(prompt: str) -> list[tuple[str, float]]:
    """Composable diffusion: `a AND b:0.5` → [("a", 1.0), (" b", 0.5)]. Like A1111, every part may end in `:weight`
    (so a prompt without AND that ends in `:1.2` is one sub-prompt of weight 1.2), trailing whitespace is dropped and
    leading whitespace kept."""
    parts = []
    for sub in _AND.split(prompt):
        m = _TRAILING_WEIGHT.match(sub)
        assert m is not None  # ^(.*?)…$ under re.S matches any text
        parts.append((m.group(1), float(m.group(2)) if m.group(2) is not None else 1.0))
    return parts


_EXTRA_NETWORK = re.compile(r"<(\w+):([^>]+)>")


@dataclass(frozen=True)
class ExtraNetworkTag:
    """`<kind:name:arg:…>`. `args` are the items after the name; `key=value` items are named, the rest positional
    (A1111's ExtraNetworkParams)."""

    kind: str
    name: str
    args: tuple[str, ...] = ()
    text: str = field(default="", compare=False)

    @property
    def items(self) -> list[str]:
        return [self.name, *self.args]

    @property
    def positional(self) -> list[str]:
        return [a for a in self.args if len(a.split("=", 2)) != 2]

    @property
    def named(self) -> dict[str, str]:
        return dict(a.split("=", 1) for a in self.args if len(a.split("=", 2)) == 2)

    def lora_multipliers(self) -> tuple[float, float, int | None]:
        """(text-encoder multiplier, UNet multiplier, dyn dim) as A1111's Lora network reads its tag:
        `<lora:n>` → 1, 1; `<lora:n:w>` → w, w; `<lora:n:te:unet>`; named `te=`, `unet=`, `dyn=` win. A
        `ValueError` in plain words names the part that is wrong (not Python's "could not convert string to float").
        """
        pos, named = self.positional, self.named
        one = "te" not in named and "unet" not in named and len(pos) < 2  # one weight for both
        te = _multiplier(named.get("te", pos[0] if pos else 1.0), "weight" if one else "text-encoder weight", self)
        unet = _multiplier(named.get("unet", pos[1] if len(pos) > 1 else te), "UNet weight", self)
        dyn_raw = named.get("dyn", pos[2] if len(pos) > 2 else None)
        if dyn_raw is not None and not str(dyn_raw).strip().isdigit():
            raise ValueError(f"the dyn value {str(dyn_raw)!r} is not a whole number")
        return te, unet, int(dyn_raw) if dyn_raw is not None else None


def _multiplier(raw: str | float, what: str, tag: ExtraNetworkTag) -> float:
    """One LoRA weight: a finite number, or a ValueError that says which part of the tag it is and how to write it."""
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = None
    if value is None or not math.isfinite(value):
        raise ValueError(f"the {what} {str(raw).strip()!r} is not a number (write it like <{tag.kind}:{tag.name}:0.8>)")
    return value


def extract_extra_networks(prompt: str) -> tuple[str, list[ExtraNetworkTag]]:
    """Remove every `<kind:args>` tag: (prompt without the tags, the tags in order). The text around a tag is left as
    it is (A1111 leaves the double space behind too)."""
    tags: list[ExtraNetworkTag] = []

    def take(m: re.Match) -> str:
        items = m.group(2).split(":")
        tags.append(ExtraNetworkTag(m.group(1), items[0], tuple(items[1:]), m.group(0)))
        return ""

    return _EXTRA_NETWORK.sub(take, prompt), tags
