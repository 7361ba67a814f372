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
    job_count: int = 1  # batches (n_iter) in this job (in this cell, for a plot)
    cell_no: int = 0
    cell_count: int = 0  # cells of a dropdown script's plot (X/Y/Z), each a generation of job_count batches; 0: none
    sampling_step: int = 0
    sampling_steps: int = 0
    textinfo: str | None = None
    preview_step: int = -1
    # Live previews are made lazily: the worker only keeps the latest latent (a cheap copy), and whoever asks for
    # the picture (a progress poll) pays for decoding it, so an unwatched job runs at full speed.
    _preview_latent: Any = None
    _preview_fn: Any = None
    _preview_cache: Any = None
    # the latest step's latents and the VAE that decodes them: what an interrupted batch returns, as A1111 does
    last_latents: Any = None
    last_vae: Any = None
    estimate_seconds: float | None = None  # the job's expected duration on this device, before it started
    step_samples: list = field(default_factory=list)  # (pixels, seconds) of single steps, for the step timer
    _last_step: tuple[int, float] | None = None
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
            self.last_latents = self.last_vae = None
            self._last_step = None  # the first step of a batch also pays for its set-up: not a step time

    def start_cell(self, index: int, count: int) -> None:
        """A script's cell `index` of `count` begins (its generation then counts its own batches and steps; until
        it starts, the cell counts as not begun, so the progress never goes back)."""
        with self._lock:
            self.cell_no, self.cell_count, self.job_no, self.sampling_step = index, count, 0, 0

    @property
    def batch_no(self) -> int:
        """The batch running, counted over the whole job (every cell of a plot): A1111's state.job_no."""
        return self.cell_no * self.job_count + self.job_no if self.cell_count else self.job_no

    @property
    def batch_count(self) -> int:
        """Batches of the whole job (cells × batches per cell for a plot): A1111's state.job_count."""
        return self.cell_count * self.job_count if self.cell_count else self.job_count

    def offer_preview(self, step: int, latent: Any, make: Any) -> None:
        with self._lock:
            self.preview_step, self._preview_latent, self._preview_fn, self._preview_cache = step, latent, make, None

    @property
    def current_image(self) -> Any:
        """A PIL image of the latest offered latent, decoded on first request."""
        with self._lock:
            latent, make, cached = self._preview_latent, self._preview_fn, self._preview_cache
        if cached is not None or latent is None:
            return cached
        image = make(latent)
        with self._lock:
            if self._preview_latent is latent:
                self._preview_cache = image
        return image

    def step(self, n: int) -> None:
        with self._lock:
            self.sampling_step = n

    @property
    def progress(self) -> float:
        """Fraction of the whole job done, over every batch (and every cell of a plot: the ETA covers the plot)."""
        with self._lock:
            if not self.job_count:
                return 0.0
            per = (self.sampling_step / self.sampling_steps) if self.sampling_steps else 0.0
            done = min(1.0, (self.job_no + per) / self.job_count)
            return min(1.0, (self.cell_no + done) / self.cell_count) if self.cell_count else done

    def time_step(self, pixels: int, now: float) -> None:
        """A step ended: the time since the previous step of the same size is one step's time."""
        last = self._last_step
        if last is not None and last[0] == pixels and pixels > 0:
            self.step_samples.append((pixels, now - last[1]))
        self._last_step = (pixels, now)

    def keep_latents(self, latents: Any, vae: Any) -> None:
        """A reference, not a copy: the sampler makes a new tensor every step."""
        self.last_latents, self.last_vae = latents, vae

    def eta(self) -> float:
        """Seconds left: from the progress so far, or from the estimate while no step has finished yet."""
        p = self.progress
        elapsed = time.time() - self.started_at
        if p > 0:
            return elapsed / p - elapsed
        return max(0.0, self.estimate_seconds - elapsed) if self.estimate_seconds else 0.0
