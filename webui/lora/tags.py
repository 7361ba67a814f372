"""A1111's extra-network prompt tags: `<lora:name>`, `<lora:name:w>`, `<lora:name:te:unet>`, `<lora:name:te=a:unet=b>`.

As in A1111 (`modules/extra_networks.py`), every `<type:args>` tag is removed from the text before encoding; the
LoRA ones (`lora`, and `lyco`, its old LyCORIS alias) become LoraTags, and other types give a warning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

EXTRA_NETWORK_RE = re.compile(r"<(\w+):([^>]+)>")
LORA_TYPES = ("lora", "lyco")


@dataclass(frozen=True)
class LoraTag:
    name: str
    te_weight: float = 1.0
    unet_weight: float = 1.0

    @property
    def tag(self) -> str:
        w = _fmt(self.te_weight)
        return f"<lora:{self.name}:{w}>" if self.te_weight == self.unet_weight else \
            f"<lora:{self.name}:{w}:{_fmt(self.unet_weight)}>"


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


@dataclass
class ParsedPrompt:
    text: str  # the prompt with every extra-network tag removed
    loras: list[LoraTag]
    warnings: list[str]


def _lora_tag(args: str) -> LoraTag:
    parts = [p.strip() for p in args.split(":")]
    name, positional, named = parts[0], [], {}
    for p in parts[1:]:
        key, eq, value = p.partition("=")
        if eq:
            named[key.strip()] = value.strip()
        else:
            positional.append(p)
    if not name:
        raise ValueError("the tag has no LoRA name")
    te = float(named.get("te", positional[0] if positional else 1.0))
    unet = float(named.get("unet", positional[1] if len(positional) > 1 else te))
    return LoraTag(name=name, te_weight=te, unet_weight=unet)


def parse_prompt(prompt: str) -> ParsedPrompt:
    """Strip the tags from `prompt`; return the clean text, the LoRA tags in order, and warnings for bad tags."""
    loras: list[LoraTag] = []
    warnings: list[str] = []

    def found(m: re.Match) -> str:
        kind, args = m.group(1), m.group(2)
        if kind.lower() not in LORA_TYPES:
            warnings.append(f"extra network type not supported: <{kind}:{args}>")
            return ""
        try:
            loras.append(_lora_tag(args))
        except ValueError as e:
            warnings.append(f"bad LoRA tag <{kind}:{args}>: {e}")
        return ""

    text = EXTRA_NETWORK_RE.sub(found, prompt or "")
    return ParsedPrompt(text=text, loras=loras, warnings=warnings)


def merge_tags(tags: list[LoraTag]) -> list[LoraTag]:
    """One tag per name, in first-seen order; repeated tags add their weights (their deltas add up in A1111 too)."""
    merged: dict[str, LoraTag] = {}
    for t in tags:
        prev = merged.get(t.name)
        merged[t.name] = t if prev is None else LoraTag(t.name, prev.te_weight + t.te_weight,
                                                        prev.unet_weight + t.unet_weight)
    return list(merged.values())
