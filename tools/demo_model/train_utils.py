"""Training helpers for tools/demo_model/train.py: logging, tensors, atomic saves, EMA and the thread tuner."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def n_params(m) -> int:
    return sum(p.numel() for p in m.parameters())


def to_tensor(imgs: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(imgs).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def atomic_torch_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def ema_update(ema, model, decay: float) -> None:
    with torch.no_grad():
        e = [p for p in ema.parameters()]
        m = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(e, m, 1.0 - decay)


class ThreadTuner:
    """Picks 1 or 2 intra-op threads by measurement. On this shared 2-core machine, 2 threads are ~1.8× faster when
    it is idle but several times slower than 1 thread when other processes compete (OpenMP threads wait for each
    other). Every `every` steps it times a few steps with each choice and keeps the faster one."""

    def __init__(self, choices=(1, 2), every: int = 300, probe: int = 2, fixed: int | None = None):
        self.choices, self.every, self.probe, self.fixed = choices, every, probe, fixed
        self.current = fixed or choices[-1]
        self.trial: list[int] = []  # remaining thread counts to try in this round
        self.times: dict[int, list[float]] = {}
        self.t0 = 0.0
        self.measured = False
        torch.set_num_threads(self.current)

    def before(self, step: int) -> None:
        if self.fixed:
            return
        if (step % self.every == 0 or not self.measured) and not self.trial:
            self.measured = True
            self.trial = [c for c in self.choices for _ in range(self.probe)]
            self.times = {c: [] for c in self.choices}
        if self.trial:
            torch.set_num_threads(self.trial[0])
        self.t0 = time.time()

    def after(self) -> None:
        if self.fixed or not self.trial:
            return
        n = self.trial.pop(0)
        self.times[n].append(time.time() - self.t0)
        if not self.trial:
            med = {c: sorted(v)[len(v) // 2] for c, v in self.times.items()}
            self.current = min(med, key=med.get)
            torch.set_num_threads(self.current)
            log(f"threads: {self.current} (median s/step {', '.join(f'{c}: {t:.2f}' for c, t in med.items())})")
