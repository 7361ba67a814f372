"""A training job's plan (what check_request resolved, before anything is written) and its live status. Their own
module so that the job (jobs.py) and the run (run.py) both import them from below, not from each other."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from webui.training.trainer import STATE_FILE

if TYPE_CHECKING:
    from webui.training.dataset import Dataset
    from webui.training.jobs import TrainLoraRequest, TrainOptions
    from webui.training.trainer import TrainConfig


@dataclass
class TrainingStatus:
    """Live state of one training job (read by the jobs API and the Train tab)."""

    total_steps: int
    step: int = 0
    loss: float | None = None
    losses: list[float] = field(default_factory=list)
    phase: str = "queued"
    resumed_from: int = 0
    samples: list[str] = field(default_factory=list)
    result: dict[str, Any] | None = None
    _t0: float | None = None
    _s0: int = 0

    def eta(self) -> float | None:
        if self._t0 is None or self.step <= self._s0:
            return None
        rate = (time.time() - self._t0) / (self.step - self._s0)
        return rate * (self.total_steps - self.step)

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "total_steps": self.total_steps,
            "loss": self.loss,
            "losses": list(self.losses),
            "phase": self.phase,
            "resumed_from": self.resumed_from,
            "eta": self.eta(),
            "samples": list(self.samples),
            "result": self.result,
        }


@dataclass
class TrainingPlan:
    req: TrainLoraRequest
    options: TrainOptions
    checkpoint: Any  # CheckpointInfo
    dataset: Dataset
    config: TrainConfig
    output: Path
    work_dir: Path
    native_size: int
    # True when a finished LoRA of this name is kept until this run completes: saves before the end (save_every,
    # a cancel) go to `partial_output`, and only the completed run replaces `output`
    replaces: bool = False

    @property
    def state_file(self) -> Path:
        return self.work_dir / STATE_FILE

    @property
    def partial_output(self) -> Path:
        """Where a run that replaces an earlier LoRA keeps its weights until it completes (kohya-like naming)."""
        return self.output.with_name(f"{self.output.stem}-partial.safetensors")
