"""Flow-matching sampling for SD 3/3.5 and FLUX.1 under Forge's names: sampler "Euler" (diffusers'
FlowMatchEulerDiscreteScheduler) with the schedule types

- "Simple": sigmas evenly spaced from 1 down to 1/steps (ComfyUI/Forge's simple schedule; diffusers' FLUX/SD3
  pipelines use the same spacing by default);
- "Normal": evenly spaced from 1 down to the schedule's end (1/1000), so the last step denoises further;
- "Beta": the scheduler's beta-distributed sigmas (use_beta_sigmas, α = β = 0.6 as ComfyUI's beta schedule);

each then shifted by the checkpoint's shift (SD 3: 3.0; FLUX schnell: 1.0; FLUX dev: a shift that follows the image
size), or by the `flow_shift` setting when it is above 0 (a fixed shift; infotext "Shift")."""

from __future__ import annotations

from typing import Any

import numpy as np

SAMPLERS = ("Euler",)  # Forge's name for flow-matching Euler
SCHEDULES = ("Simple", "Normal", "Beta")


def scheduler_config(base: dict[str, Any], schedule: str, shift: float) -> dict[str, Any]:
    cfg = dict(base)
    if shift > 0:
        cfg.update(shift=float(shift), use_dynamic_shifting=False)
    cfg["use_beta_sigmas"] = schedule == "Beta"
    return cfg


def make_scheduler(base: dict[str, Any], schedule: str, shift: float, steps: int) -> tuple[Any, dict[str, Any]]:
    """(a new scheduler, the pipeline call's `sigmas` argument for `steps` steps, or none for the default)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    cfg = scheduler_config(base, schedule, shift)
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(cfg)
    kwargs: dict[str, Any] = {}
    if schedule == "Normal":
        end = 1.0 / int(cfg.get("num_train_timesteps", 1000))
        kwargs["sigmas"] = np.linspace(1.0, end, max(1, int(steps))).tolist()
    return scheduler, kwargs
