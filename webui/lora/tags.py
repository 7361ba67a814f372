"""A1111's LoRA prompt tags: `<lora:name>`, `<lora:name:w>`, `<lora:name:te:unet>`, `<lora:name:te=a:unet=b>`.

The tags are found by the prompt parser (`webui.prompts.parser.extract_extra_networks`, which also removes them from
the text that gets encoded, as A1111 does). The LoRA ones (`lora`, and `lyco`, its old LyCORIS alias) become
LoraTags here; other kinds give a warning.
"""

from __future__ import annotations

from dataclasses import dataclass

from webui.prompts.parser import extract_extra_networks

LORA_TYPES = ("lora", "lyco")


@dataclass(frozen=True)
class LoraTag:
    name: str
    te_weight: float = 1.0
    unet_weight: float = 1.0

    @property
    def tag(self) -> str:
        w = _fmt(self.te_weight)
        return (
            f"<lora:{self.name}:{w}>"
            if self.te_weight == self.unet_weight
            else f"<lora:{self.name}:{w}:{_fmt(self.unet_weight)}>"
        )


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


@dataclass
class ParsedPrompt:
    text: str  # the prompt with every extra-network tag removed
    loras: list[LoraTag]
    warnings: list[str]


def from_extra_networks(tags) -> tuple[list[LoraTag], list[str]]:
    """The parser's ExtraNetworkTags → (LoraTags, warnings for other kinds and unreadable weights)."""
    loras: list[LoraTag] = []
    warnings: list[str] = []
    for tag in tags:
        if tag.kind.lower() not in LORA_TYPES:
            warnings.append(f"extra network type not supported: {tag.text or tag.kind}")
            continue
        try:
            te, unet, _dyn = tag.lora_multipliers()
        except ValueError as e:
            warnings.append(f"bad LoRA tag {tag.text}: {e}")
            continue
        if not tag.name.strip():
            warnings.append(f"bad LoRA tag {tag.text}: no name")
            continue
        loras.append(LoraTag(name=tag.name.strip(), te_weight=te, unet_weight=unet))
    return loras, warnings


def parse_prompt(prompt: str) -> ParsedPrompt:
    """Strip every `<kind:args>` tag from `prompt`; return the clean text, the LoRA tags in order, and warnings."""
    text, tags = extract_extra_networks(prompt or "")
    loras, warnings = from_extra_networks(tags)
    return ParsedPrompt(text=text, loras=loras, warnings=warnings)


def merge_tags(tags: list[LoraTag]) -> list[LoraTag]:
    """One tag per name, in first-seen order; repeated tags add their weights (their deltas add up in A1111 too)."""
    merged: dict[str, LoraTag] = {}
    for t in tags:
        prev = merged.get(t.name)
        merged[t.name] = (
            t if prev is None else LoraTag(t.name, prev.te_weight + t.te_weight, prev.unet_weight + t.unet_weight)
        )
    return list(merged.values())
