"""Token merging (ToMe for SD, Bolya & Hoffman 2023) on the UNet's self-attention (settings `token_merging_ratio`,
`token_merging_ratio_hr`; infotext `Token merging ratio`, `Token merging ratio hr`, as A1111; off by default).

In each transformer block of the highest-resolution level that has attention, the most similar tokens are merged
before the self-attention and copied back after it, so the attention (quadratic in the token count) runs on
`1 - ratio` of the tokens. The matching itself is the `tomesd` package's (`bipartite_soft_matching_random2d`, with
A1111's arguments: 2×2 strides, no random destination choice, so the same seed gives the same pixels). The level is
the full latent resolution on SD 1.x/2.x (A1111's `max_downsample` 1); SDXL has no attention there, so its merged
level is the next one (with `max_downsample` 1 the ratio would change nothing on SDXL, yet be written in the
infotext).

Why not `tomesd.apply_patch`: it swaps each `BasicTransformerBlock`'s class for one whose forward is a copy of
diffusers 0.14's (losing what 0.42's forward does since: GLIGEN kwargs, feed-forward chunking, newer norm types).
Here diffusers' own forward stays: a hook on each block computes the merge from the block's input (as tomesd does)
and a hook on the block's `attn1` merges its input and unmerges its output, the exact place tomesd applies it.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from diffusers.hooks import HookRegistry, ModelHook

SIZE_HOOK, BLOCK_HOOK, ATTN_HOOK = "easel.tome.size", "easel.tome.block", "easel.tome.attn1"
MAX_RATIO = 0.75  # with 2×2 strides at most 3 of every 4 tokens can merge (tomesd's own bound)
STRIDE = 2


class TokenMergeState:
    def __init__(self, ratio: float, match: Callable) -> None:
        self.ratio, self.match = ratio, match  # match: tomesd's bipartite_soft_matching_random2d
        self.size: tuple[int, int] = (0, 0)  # latent height, width of the current UNet call


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


class _Size(ModelHook):
    """On the UNet: the latent size, from which each block's downsampling is known."""

    def __init__(self, state: TokenMergeState) -> None:
        super().__init__()
        self.state = state

    def pre_forward(self, module, *args, **kwargs):
        sample = args[0] if args else kwargs["sample"]
        self.state.size = (int(sample.shape[-2]), int(sample.shape[-1]))
        return args, kwargs


class _Attn(ModelHook):
    """On a block's self-attention: merge its input, unmerge its output (the merge set by the block's `_Block`)."""

    def __init__(self) -> None:
        super().__init__()
        self.merge: Callable[[torch.Tensor], torch.Tensor] = _identity
        self.unmerge: Callable[[torch.Tensor], torch.Tensor] = _identity

    def new_forward(self, module, hidden_states, *args, **kwargs):
        if (
            self.merge is _identity
            or kwargs.get("attention_mask") is not None
            or kwargs.get("encoder_hidden_states") is not None
        ):
            return self.fn_ref.original_forward(hidden_states, *args, **kwargs)
        return self.unmerge(self.fn_ref.original_forward(self.merge(hidden_states), *args, **kwargs))


class _Block(ModelHook):
    """On a `BasicTransformerBlock`: compute this call's merge from the block's input (tomesd's `compute_merge`)."""

    def __init__(self, state: TokenMergeState, attn: _Attn) -> None:
        super().__init__()
        self.state, self.attn = state, attn

    def pre_forward(self, module, *args, **kwargs):
        x = args[0] if args else kwargs["hidden_states"]
        self.attn.merge = self.attn.unmerge = _identity
        h, w = self.state.size
        tokens = x.shape[1] if x.dim() == 3 else 0
        if self.state.ratio > 0 and tokens and h * w >= tokens:
            downsample = int(math.ceil(math.sqrt(h * w // tokens)))
            r = int(tokens * min(self.state.ratio, MAX_RATIO))
            merge, unmerge = self.state.match(
                x, math.ceil(w / downsample), math.ceil(h / downsample), STRIDE, STRIDE, r, no_rand=True
            )
            self.attn.merge, self.attn.unmerge = merge, unmerge
        return args, kwargs


def blocks(unet: torch.nn.Module) -> list[torch.nn.Module]:
    """The transformer blocks (diffusers' BasicTransformerBlock) ToMe merges in: those of the highest-resolution
    level with attention, down and up (SD 1.x/2.x: the first level; SDXL: the second)."""
    from diffusers.models.attention import BasicTransformerBlock

    downs, ups = list(getattr(unet, "down_blocks", ())), list(getattr(unet, "up_blocks", ()))
    level = next((i for i, b in enumerate(downs) if getattr(b, "attentions", None)), None)
    if level is None or len(ups) != len(downs):
        return []
    return [
        m
        for part in (downs[level], ups[len(ups) - 1 - level])
        for m in part.modules()
        if isinstance(m, BasicTransformerBlock) and getattr(m, "attn1", None) is not None
    ]


def size_hook(unet: torch.nn.Module) -> _Size | None:
    registry = getattr(unet, "_diffusers_hook", None)
    return registry.get_hook(SIZE_HOOK) if registry is not None else None


def available() -> bool:
    """tomesd installed (requirements-nodeps.txt)."""
    import importlib.util

    return importlib.util.find_spec("tomesd") is not None


def install(unet: torch.nn.Module, ratio: float) -> TokenMergeState:
    from tomesd.merge import bipartite_soft_matching_random2d  # an optional package: imported only when asked for

    state = TokenMergeState(ratio, bipartite_soft_matching_random2d)
    for block in blocks(unet):
        attn = _Attn()
        HookRegistry.check_if_exists_or_initialize(block.attn1).register_hook(attn, ATTN_HOOK)
        HookRegistry.check_if_exists_or_initialize(block).register_hook(_Block(state, attn), BLOCK_HOOK)
    HookRegistry.check_if_exists_or_initialize(unet).register_hook(_Size(state), SIZE_HOOK)
    return state


def remove(unet: torch.nn.Module) -> None:
    HookRegistry.check_if_exists_or_initialize(unet).remove_hook(SIZE_HOOK, recurse=False)
    for block in blocks(unet):
        for module, name in ((block, BLOCK_HOOK), (block.attn1, ATTN_HOOK)):
            registry: Any = getattr(module, "_diffusers_hook", None)
            if registry is not None:
                registry.remove_hook(name, recurse=False)
