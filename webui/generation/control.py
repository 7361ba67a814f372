"""What a running job shares with the outside world: progress, live preview, interrupt and skip."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class JobControl:
    """Written by the worker, read by progress endpoints; `interrupt()`/`skip()` may be called from any thread."""

    job_no: int = 0
    job_count: int = 1  # batches (n_iter) in this job
    sampling_step: int = 0
    sampling_steps: int = 0
    textinfo: str | None = None
    current_image: Any = None  # PIL image of the latest live preview
    preview_step: int = -1
    started_at: float = field(default_factory=time.time)
    _interrupted: threading.Event = field(default_factory=threading.Event)
    _skipped: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def interrupt(self) -> None:
        self._interrupted.set()

    def skip(self) -> None:
        self._skipped.set()

    @property
    def interrupted(self) -> bool:
        return self._interrupted.is_set()

    @property
    def skipped(self) -> bool:
        return self._skipped.is_set()

    def clear_skip(self) -> None:
        self._skipped.clear()

    def start_batch(self, index: int, steps: int) -> None:
        with self._lock:
            self.job_no, self.sampling_step, self.sampling_steps = index, 0, steps

    def step(self, n: int) -> None:
        with self._lock:
            self.sampling_step = n

    @property
    def progress(self) -> float:
        """Fraction of the whole job done, over every batch."""
        with self._lock:
            if not self.job_count:
                return 0.0
            per = (self.sampling_step / self.sampling_steps) if self.sampling_steps else 0.0
            return min(1.0, (self.job_no + per) / self.job_count)

    def eta(self) -> float:
        p = self.progress
        elapsed = time.time() - self.started_at
        return elapsed / p - elapsed if p > 0 else 0.0
