"""Carry out a MergePlan: read each output tensor in row blocks from its sources, merge in float32, cast, and append
it to the output file (stream_writer), so memory holds a few blocks at a time, never a checkpoint.

Memory bound: the inputs are read `BLOCK_BYTES` of float32 rows at a time (a tensor smaller than that, whole) into
fresh memory, and the arithmetic runs in place, so one block of A, B (and C) is alive at once, plus the cast of the
result when saving as float16: about 4 × BLOCK_BYTES (128 MiB) above the process's baseline whatever the size of
the checkpoints (measured on two full-size SD 1.5 files: see benchmarks/merge_memory.py). `.ckpt` inputs are the
exception: torch can only unpickle them whole, so they are in RAM for the whole merge (convert them to .safetensors
to merge big ones).
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable

import torch

from webui.merge.plan import METHODS, MergePlan, Step
from webui.merge.sources import TensorSource, parsed_metadata
from webui.merge.stream_writer import StreamWriter

BLOCK_BYTES = 32 << 20


def _blocks(shape: tuple[int, ...], itemsize: int = 4) -> list[tuple[int, int]]:
    """Row ranges along the first dimension, each about BLOCK_BYTES at `itemsize` bytes per element."""
    if not shape:
        return [(0, 1)]
    rows = shape[0]
    per_row = max(1, math.prod(shape[1:]) * itemsize)
    step = max(1, BLOCK_BYTES // per_row)
    return [(s, min(rows, s + step)) for s in range(0, rows, step)]


def merged_block(
    step: Step,
    method: str,
    multiplier: float,
    a: TensorSource,
    b: TensorSource | None,
    c: TensorSource | None,
    vae: TensorSource | None,
    start: int,
    stop: int,
) -> torch.Tensor:
    """Rows start:stop of one output tensor, in its output dtype."""
    key, dtype = step.spec.name, step.spec.dtype
    if step.kind == "vae":
        assert vae is not None  # the plan has "vae" steps only with a VAE
        return vae.rows(key, start, stop).to(dtype)
    if step.kind == "copy":
        return a.rows(key, start, stop).to(dtype)
    m = multiplier
    # in place, on fresh blocks (sources hand out their own copies): the working set is one block of A and B (and
    # C until the difference is taken); the arithmetic is A1111's, in the same order: ((1 - m) * a) + (m * b) and
    # a + (m * (b - c))
    assert b is not None  # the plan has "merge" steps only with a B
    ta = a.rows(key, start, stop).to(step.compute)
    tb = b.rows(key, start, stop).to(step.compute)
    part = ta[:, : step.channels] if step.channels else ta  # A1111 merges the channels they share into A's tensor
    if method == "weighted_sum":
        part.mul_(1 - m)
        part.add_(tb.mul_(m))
    elif c is not None and key in c:  # add_difference; a tensor C lacks adds no difference (A1111: zeros)
        tb.sub_(c.rows(key, start, stop).to(step.compute))
        part.add_(tb.mul_(m))
    return ta.to(dtype)


def write_all(
    writer: StreamWriter,
    plan: MergePlan,
    method: str,
    multiplier: float,
    a: TensorSource,
    b: TensorSource | None,
    c: TensorSource | None,
    vae: TensorSource | None,
    progress: Callable[[int], None],
    stop: Callable[[], None],
) -> None:
    """Every tensor, in the writer's order. `progress(n)` after each tensor; `stop()` is called before each block
    and aborts the merge by raising (stream_safetensors then removes the temp file: nothing is left behind)."""
    steps = plan.by_name()
    for done, spec in enumerate(writer.specs, start=1):
        step = steps[spec.name]
        if spec.nbytes:
            for start, end in _blocks(spec.shape):
                stop()
                writer.write(
                    merged_block(step, method, multiplier, a, b, c, vae, start, end).reshape(
                        (end - start, *spec.shape[1:]) if spec.shape else ()
                    )
                )
        progress(done)


def merge_metadata(
    plan: MergePlan,
    *,
    method: str,
    multiplier: float,
    save_as_half: bool,
    custom_name: str,
    config_source: int,
    bake_in_vae: str,
    discard_weights: str,
    inputs: list[tuple[Any, TensorSource]],
    legacy_hash: Callable[[Any], str],
    easel_config: str | None,
) -> dict[str, str]:
    """The header metadata A1111 writes: its inputs' metadata (A, then B, then C, A1111's "copy metadata" default),
    "format": "pt", `sd_merge_recipe` (JSON) and `sd_merge_models` (JSON: {sha256: {name, legacy_hash,
    sd_merge_recipe}} for each input, plus the models each input was itself merged from). `inputs` are
    (CheckpointInfo, source) for A, B, C in that order. Easel adds nothing but A's `easel.config` (the
    hyperparameters shapes don't reveal, which the merged model shares with A)."""
    metadata: dict[str, str] = {}
    for _, source in inputs:
        metadata.update({str(k): str(v) for k, v in source.metadata.items()})
    metadata.pop("easel.config", None)
    if easel_config:
        metadata["easel.config"] = easel_config
    metadata["format"] = "pt"
    infos = [info for info, _ in inputs]
    recipe = {
        "type": "webui",
        "primary_model_hash": infos[0].sha256,
        "secondary_model_hash": infos[1].sha256 if len(infos) > 1 else None,
        "tertiary_model_hash": infos[2].sha256 if len(infos) > 2 else None,
        "interp_method": METHODS[method],
        "multiplier": multiplier,
        "save_as_half": save_as_half,
        "custom_name": custom_name,
        "config_source": config_source,
        "bake_in_vae": bake_in_vae,
        "discard_weights": discard_weights,
        "is_inpainting": plan.is_inpainting,
        "is_instruct_pix2pix": plan.is_instruct_pix2pix,
    }
    models: dict[str, Any] = {}
    for info, source in inputs:
        meta = parsed_metadata(source.metadata)
        models[info.sha256] = {
            "name": info.name,
            "legacy_hash": legacy_hash(info.path),
            "sd_merge_recipe": meta.get("sd_merge_recipe"),
        }
        ancestors = meta.get("sd_merge_models")
        if isinstance(ancestors, dict):
            models.update(ancestors)
    metadata["sd_merge_recipe"] = json.dumps(recipe)
    metadata["sd_merge_models"] = json.dumps(models)
    return metadata
