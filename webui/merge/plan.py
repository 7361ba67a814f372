"""What a merge will write, decided from names, shapes and dtypes alone (no tensor is read here): for every output
tensor where it comes from and its dtype. Everything that can be refused (mixed families, shapes that don't fit,
a VAE of another layout, a discard pattern that removes everything) is refused here, before a byte is written.

The rules are A1111's (modules/extras.py, run_modelmerger):
- the output has A's tensors; those whose name contains "model" and that B also has are merged, the others are
  copied from A (tensors only B has are left out); `…embeddings.position_ids` is never merged;
- "Weighted sum" A·(1−M) + B·M, "Add difference" A + (B − C)·M (C lacking a tensor: no difference), "No
  interpolation" copies A;
- A 9-channel inpainting (or 8-channel instruct-pix2pix) A with a 4-channel B merges the 4 channels they share;
- a baked-in VAE replaces `first_stage_model.*`; "discard weights" drops every tensor whose name the pattern matches;
- save as half: float32 tensors become float16.
Easel computes every merged tensor in float32 (float64 if an input is), then casts to the dtype A1111's arithmetic
gives (the inputs' promoted dtype). Non-float tensors are copied from A (A1111 would turn them into floats).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from webui.errors import InvalidRequest, ModelLoadError
from webui.merge.sources import TensorSource
from webui.merge.stream_writer import TensorSpec
from webui.models.families import Family

SKIP_ON_MERGE = ("cond_stage_model.transformer.text_model.embeddings.position_ids",)
METHODS = {"weighted_sum": "Weighted sum", "add_difference": "Add difference", "no_interpolation": "No interpolation"}
FAMILY_LABEL = {Family.SD1: "SD 1.x", Family.SD2: "SD 2.x", Family.SDXL: "SDXL"}
# A1111 merges only tensors whose name contains "model" (every weight of an LDM-layout SD 1.x/2.x/XL file; not the
# noise-schedule buffers). Families A1111 never knew (their files need not use LDM names) merge every shared tensor.
LDM_FAMILIES = (Family.SD1, Family.SD2, Family.SDXL)


@dataclass(frozen=True)
class Step:
    """One output tensor: `kind` is "copy" (A), "vae" (the baked-in VAE) or "merge"; `channels` is set when only
    the first `channels` input channels are merged (inpainting / instruct-pix2pix A with a plain B)."""

    spec: TensorSpec
    kind: str
    channels: int | None = None
    compute: torch.dtype = torch.float32


@dataclass
class MergePlan:
    steps: list[Step]
    is_inpainting: bool = False
    is_instruct_pix2pix: bool = False
    family: Family | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(s.spec.nbytes for s in self.steps)

    def by_name(self) -> dict[str, Step]:
        return {s.spec.name: s for s in self.steps}


def source_family(source: TensorSource) -> Family:
    from webui.models.probe import detect_family

    try:
        return detect_family(source.shapes)
    except ModelLoadError as e:
        raise InvalidRequest(f"{source.name}: {e.message}") from None


def check_families(a: TensorSource, *others: TensorSource | None) -> Family:
    """All inputs of one family, or a message naming each file's family."""
    family = source_family(a)
    for o in others:
        if o is None:
            continue
        other = source_family(o)
        if other != family:
            raise InvalidRequest(
                f"cannot merge checkpoints of different families: {a.name} is "
                f"{_label(family)}, {o.name} is {_label(other)}"
            )
    return family


def _label(family: Family) -> str:
    return FAMILY_LABEL.get(family, str(getattr(family, "value", family)).upper())


def _half(dtype: torch.dtype, save_as_half: bool) -> torch.dtype:
    return torch.float16 if save_as_half and dtype == torch.float32 else dtype


def _channels(key: str, a: tuple[int, ...], b: tuple[int, ...], a_name: str, b_name: str) -> int:
    """The input channels A and B share when only their second dimension differs in A1111's allowed way."""
    if len(a) < 2 or len(a) != len(b) or a[:1] + a[2:] != b[:1] + b[2:]:
        raise InvalidRequest(
            f"tensor shapes differ at {key}: {a_name} has {list(a)}, {b_name} has {list(b)}; "
            "these checkpoints can't be merged"
        )
    pair = (a[1], b[1])
    if pair in ((4, 9), (4, 8)):
        kind = "inpainting" if b[1] == 9 else "instruct-pix2pix"
        raise InvalidRequest(
            f"when merging an {kind} model with a normal one, the {kind} model must be the "
            f"primary (A): {b_name} is the {kind} model"
        )
    if pair not in ((9, 4), (8, 4)):
        raise InvalidRequest(f"tensor shapes differ at {key}: {a_name} has {list(a)}, {b_name} has {list(b)}")
    return 4


def make_plan(
    method: str,
    a: TensorSource,
    b: TensorSource | None,
    c: TensorSource | None,
    *,
    vae: TensorSource | None = None,
    save_as_half: bool = False,
    discard: Callable[[str], bool] | None = None,
) -> MergePlan:
    if method not in METHODS:
        raise InvalidRequest(f"unknown merge method {method!r}: one of {', '.join(METHODS)}")
    if method != "no_interpolation" and b is None:
        raise InvalidRequest("merging requires a secondary model")
    if method == "add_difference" and c is None:
        raise InvalidRequest("Add difference requires a tertiary model")
    b = b if method != "no_interpolation" else None
    c = c if method == "add_difference" else None
    plan = MergePlan(steps=[], family=check_families(a, b, c))
    vae_hits = 0
    ldm = plan.family in LDM_FAMILIES
    for key, shape in a.shapes.items():
        if discard is not None and discard(key):
            continue
        dtype = a.dtypes[key]
        if vae is not None and key in vae:
            if vae.shapes[key] != shape:
                raise InvalidRequest(
                    f"the VAE {vae.name} does not fit {a.name}: {key} is {list(vae.shapes[key])} "
                    f"in the VAE, {list(shape)} in the checkpoint"
                )
            vae_hits += 1
            plan.steps.append(Step(TensorSpec(key, _half(vae.dtypes[key], save_as_half), shape), "vae"))
            continue
        merged = b is not None and ("model" in key or not ldm) and key in b and key not in SKIP_ON_MERGE
        if merged and b is not None and not (dtype.is_floating_point and b.dtypes[key].is_floating_point):
            merged = False  # integer buffers (position ids) stay as A has them
        if not merged:
            plan.steps.append(Step(TensorSpec(key, _half(dtype, save_as_half), shape), "copy"))
            continue
        assert b is not None  # merged implies it
        channels = None
        if b.shapes[key] != shape:
            channels = _channels(key, shape, b.shapes[key], a.name, b.name)
            plan.is_inpainting |= shape[1] == 9
            plan.is_instruct_pix2pix |= shape[1] == 8
        out = torch.promote_types(dtype, b.dtypes[key])
        if c is not None and key in c:
            if c.shapes[key] != b.shapes[key]:
                raise InvalidRequest(
                    f"tensor shapes differ at {key}: {b.name} has {list(b.shapes[key])}, "
                    f"{c.name} has {list(c.shapes[key])}"
                )
            if c.dtypes[key].is_floating_point:
                out = torch.promote_types(out, c.dtypes[key])
        if channels is not None:
            out = dtype  # A1111 writes the shared channels into A's tensor
        compute = torch.float64 if torch.float64 in (dtype, b.dtypes[key]) else torch.float32
        plan.steps.append(Step(TensorSpec(key, _half(out, save_as_half), shape), "merge", channels, compute))
    if vae is not None and vae_hits == 0:
        raise InvalidRequest(
            f"the VAE {vae.name} has no tensor the checkpoint's VAE (first_stage_model.*) has: "
            "it is not a VAE for this model family, or not in the LDM layout A1111 uses"
        )
    if not plan.steps:
        raise InvalidRequest("the discard pattern matches every tensor: nothing would be left to save")
    return plan
