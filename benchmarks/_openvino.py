"""Optional OpenVINO rows for benchmarks/cpu_fast_path.py: the same UNet converted with `openvino.convert_model`
(traced from this process's torch model, so the weights are the same) and compiled for the CPU at one static shape,
with fp32 or bf16 inference precision.

OpenVINO is not an Easel dependency. Install it beside the venv without touching its torch (optimum-intel would pull
another torch and torchvision; `openvino` alone pulls only openvino-telemetry):

    .venv/bin/python -m pip install --no-deps --target /tmp/ov-pkgs openvino==2026.4.1 openvino-telemetry==2025.2.0
    python benchmarks/cpu_fast_path.py --only unet --sizes 512 --paired 6 --openvino /tmp/ov-pkgs
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable


def import_openvino(path: str) -> tuple[Any, str]:
    """(the openvino module or None, why not)."""
    if path and path != "auto" and path not in sys.path:
        sys.path.insert(0, path)
    try:
        import openvino
    except ImportError as e:
        return None, f"openvino not importable ({e}); see benchmarks/_openvino.py for the install line"
    return openvino, ""


def compile_unet(ov, unet, x, ctx, precisions: list[str], threads: int) -> tuple[dict[str, Callable], dict]:
    """One callable `f(timestep) -> noise prediction` per inference precision, and the seconds each stage took."""
    import numpy as np
    import torch

    class Sample(torch.nn.Module):  # the UNet with positional inputs and a plain tensor out, as convert_model wants
        def __init__(self, u):
            super().__init__()
            self.u = u

        def forward(self, sample, timestep, encoder_hidden_states):
            return self.u(sample, timestep, encoder_hidden_states=encoder_hidden_states, return_dict=False)[0]

    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    with torch.no_grad():
        model = ov.convert_model(Sample(unet), example_input=(x, torch.tensor(999.0), ctx))
    seconds["convert"] = time.perf_counter() - t0
    core, out = ov.Core(), {}
    for precision in precisions:
        t0 = time.perf_counter()
        compiled = core.compile_model(
            model,
            "CPU",
            {"INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"},
        )
        seconds[f"compile {precision}"] = time.perf_counter() - t0
        request = compiled.create_infer_request()
        inputs = (x.numpy(), ctx.numpy())

        def run(t: int, request=request, inputs=inputs) -> torch.Tensor:
            result = request.infer([inputs[0], np.array(float(t), dtype=np.float32), inputs[1]])
            return torch.from_numpy(result[0].copy())

        out[f"OpenVINO {precision}"] = run
    return out, seconds
