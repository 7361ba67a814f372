"""What the OpenVINO backend keeps in f32 under bf16 inference precision (the IR is marked before it is saved).

OpenVINO's CPU plugin runs every node in bf16 unless it carries the "disable FP16 compression" runtime attribute
(rt_info `precise_0`; the plugin honours it for bf16 too). Torch's bf16 autocast, which Easel's default runs, rounds
far less: only the inputs and outputs of its bf16 ops (convolutions, linears, attention) are bf16; a norm reads the
fp32 residual stream and a residual Add of a bf16 branch into it stays fp32 by type promotion. Plain OpenVINO bf16
instead carries the residual stream, the norms and the timestep itself in bf16. The rule here makes the compiled
graph round where torch does (measured per layer against torch's autocast: docs/performance.md):

- Easel's fp32 islands (precision.FP32_MODULES) and the timestep's embedding (`KEEP_F32`), with the residual Add
  after each conv_shortcut (without that Add the CPU plugin fails to compile, OpenVINO 2026.4);
- every Add of two computed values (no constant operand): the residual Adds of the ResNet and transformer blocks,
  the timestep bias Add, peft's LoRA sums;
- the norms: LayerNorm's MVN and its affine Multiply/Add, and GroupNormalization written out as
  Reshape → MVN → Reshape → Multiply → Add with the same marks (the plugin rewrites a GroupNormalization node into
  a new MVN that does not inherit the mark, so its input and output were rounded), with the SiLU after it;
- the timestep: the `timestep` input becomes shape (batch, 1) and feeds the sinusoidal embedding's Multiply
  directly. The traced graph broadcast and unsqueezed it first, and the plugin ran those data-movement nodes in
  bf16 whatever their mark: a fractional or large timestep (946.3, 999) was rounded to 8 significant bits.

The mark does not survive where the plugin replaces a node: a Linear (MatMul + bias) becomes a FullyConnected node
that runs bf16 even when marked, so time_emb_proj and time_embedding still run in bf16 here (torch keeps
time_emb_proj fp32).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from webui.models.precision import FP32_MODULES

# besides FP32_MODULES: the timestep's sinusoidal embedding and its MLP
KEEP_F32 = (*FP32_MODULES, "time_proj", "time_embedding")
# the marking rule's version: part of the IR cache key, so an IR marked by an older rule is converted again
RULE = 2
TIMESTEP = "timestep"
_DATA_MOVES = ("Broadcast", "Unsqueeze", "Convert", "Reshape")


def _mark(op: Any) -> None:
    op.get_rt_info()["precise_0"] = ""  # serialised as the DisablePrecisionConversion ("precise") attribute


def _consumers(op: Any) -> list:
    return [target.get_node() for out in op.outputs() for target in out.get_target_inputs()]


def _constant(output: Any) -> bool:
    """True for a value computed from constants only through data moves (a bias, a norm's weight)."""
    node = output.get_node()
    while node.get_type_name() in _DATA_MOVES:
        node = node.input_value(0).get_node()
    return bool(node.get_type_name() == "Constant")


def mark_f32(ov: Any, model: Any) -> tuple[Any, int]:
    """The rule above applied to a converted UNet: (the model, possibly rebuilt with the new timestep input, and
    how many nodes were marked)."""
    marked = 0

    def mark(op: Any) -> None:
        nonlocal marked
        _mark(op)
        marked += 1

    for op in list(model.get_ops()):
        kind = op.get_type_name()
        if kind in ("Parameter", "Result", "Constant"):
            continue
        path = op.get_friendly_name().split("/")[0].split(".")
        if kind == "GroupNormalization":
            _mark_after_norm(_write_out_group_norm(ov, op, mark), mark)
        elif kind == "MVN":
            mark(op)
            _mark_after_norm(op, mark)
        elif any(part in KEEP_F32 for part in path) or (
            kind == "Add" and not any(_constant(i.get_source_output()) for i in op.inputs())
        ):
            mark(op)
    return _timestep_input(ov, model), marked


def _mark_after_norm(op: Any, mark: Any) -> None:
    """A norm's affine Multiply/Add (constant operand) and the SiLU after it, up to the next convolution/linear."""
    for node in _consumers(op):
        kind = node.get_type_name()
        affine = kind in ("Multiply", "Add") and any(_constant(i.get_source_output()) for i in node.inputs())
        if affine or kind == "Swish":
            mark(node)
            _mark_after_norm(node, mark)


def _write_out_group_norm(ov: Any, op: Any, mark: Any) -> Any:
    """GroupNormalization(x, scale, bias) → (MVN over each group of x's reshape) · scale + bias, every node marked;
    returns the last node. Hand-written: OpenVINO's own decomposition happens inside the CPU plugin, after the
    marks are read."""
    o = ov.opset13
    data, scale, bias = (op.input_value(i) for i in range(3))
    attributes = op.get_attributes()
    groups = o.constant(np.array([0, int(attributes["num_groups"]), -1], dtype=np.int64))
    grouped = o.reshape(data, groups, special_zero=True)
    normed = o.mvn(
        grouped, o.constant(np.array([2], dtype=np.int64)), True, float(attributes["epsilon"]), "inside_sqrt"
    )
    back = o.reshape(normed, o.shape_of(data), special_zero=False)
    rank = op.get_input_partial_shape(0).rank.get_length()  # 4 in a conv block, 3 in the VAE's attention
    channel_axes = o.constant(np.arange(1, rank - 1, dtype=np.int64))  # scale/bias (C,) → (C, 1, …) per spatial axis
    scaled = o.multiply(back, o.unsqueeze(scale, channel_axes))
    out = o.add(scaled, o.unsqueeze(bias, channel_axes))
    for node in (grouped, normed, back, scaled, out):
        mark(node)
    out.set_friendly_name(op.get_friendly_name())
    for target in list(op.output(0).get_target_inputs()):
        target.replace_source_output(out.output(0))
    return out


def _timestep_input(ov: Any, model: Any) -> Any:
    """The model with its `timestep` input of shape (batch, 1) feeding the sinusoidal embedding's Multiply, or the
    model unchanged when its graph is not the expected Broadcast/Unsqueeze → Multiply chain (then the input stays
    shape (batch,): see timestep_shape)."""
    params = list(model.get_parameters())
    found = [p for p in params if p.get_friendly_name() == TIMESTEP]
    if len(found) != 1 or found[0].get_partial_shape().rank.get_length() != 1:
        return model
    node = found[0]
    while True:
        consumers = _consumers(node)
        if len(consumers) != 1:
            return model
        node = consumers[0]
        if node.get_type_name() == "Multiply":
            break
        if node.get_type_name() not in _DATA_MOVES:
            return model
    inputs = [i for i in node.inputs() if not _constant(i.get_source_output())]
    if len(inputs) != 1:
        return model
    new = ov.opset13.parameter(ov.PartialShape([-1, 1]), ov.Type.f32, name=TIMESTEP)
    new.output(0).get_tensor().set_names({TIMESTEP})
    inputs[0].replace_source_output(new.output(0))
    params[params.index(found[0])] = new
    return ov.Model(model.get_results(), params, model.get_friendly_name())


def timestep_shape(model: Any, batch: int) -> tuple[int, ...]:
    """The shape the IR's timestep input takes for `batch` samples: (batch, 1) when mark_f32 rewrote it, else
    (batch,)."""
    rank = model.inputs[1].get_partial_shape().rank.get_length()
    return (batch, 1) if rank == 2 else (batch,)
