"""How long a job will take on this device, said before it starts: from step times measured on earlier jobs.

Every denoising step's wall time is recorded per (checkpoint, size bucket) as seconds per pixel (batch included;
buckets are powers of two of the pixel count, since a step's cost is not quite linear in pixels). A new job's
estimate sums its passes (base, hires, every batch) at the rate of the same bucket, else the nearest measured
bucket of the same checkpoint scaled by pixels. With nothing measured for that checkpoint there is no estimate:
None, never a guess.
"""

from __future__ import annotations

import math
import threading
from typing import Any, Iterable

from webui.generation.native import model_for_job, native_size
from webui.generation.requests import Img2ImgRequest, Txt2ImgRequest, size_or_native
from webui.generation.slg import SLG_PASS_COST, window_steps

SMOOTHING = 0.5  # weight of a new measurement against what was known (steps of one job vary little)


def bucket(pixels: int) -> int:
    return round(math.log2(max(1, pixels)))


class StepTimer:
    """Measured seconds per pixel-step, per (model, bucket). Owned by the Application; thread-safe."""

    def __init__(self) -> None:
        self._rates: dict[tuple[str, int], float] = {}
        self._lock = threading.Lock()

    def record(self, model: str, samples: Iterable[tuple[int, float]]) -> None:
        """(pixels, seconds) of single steps."""
        with self._lock:
            for pixels, seconds in samples:
                if pixels <= 0 or seconds <= 0:
                    continue
                key, rate = (model, bucket(pixels)), seconds / pixels
                old = self._rates.get(key)
                self._rates[key] = rate if old is None else old + SMOOTHING * (rate - old)

    def rate(self, model: str, pixels: int) -> float | None:
        """Seconds per pixel-step at this size: the same bucket, else the nearest one measured for the model."""
        want = bucket(pixels)
        with self._lock:
            known = {b: r for (m, b), r in self._rates.items() if m == model}
        if not known:
            return None
        return known.get(want, known[min(known, key=lambda b: abs(b - want))])

    def estimate(self, model: str, passes: Iterable[tuple[int, float]]) -> float | None:
        """Seconds for (pixels, steps) passes, or None when this model has never been timed here."""
        total = 0.0
        for pixels, steps in passes:
            rate = self.rate(model, pixels)
            if rate is None:
                return None
            total += rate * pixels * steps
        return total


def job_passes(req: Txt2ImgRequest, native: int) -> list[tuple[int, float]]:
    """(pixels of one batch, steps) for every denoising pass of a request, batches included."""
    width, height = size_or_native(req, native)
    steps = float(req.steps)
    if isinstance(req, Img2ImgRequest):
        steps = max(1.0, req.steps * float(req.denoising_strength))
    elif getattr(req, "slg_scale", 0) > 0:  # first pass only: the hires pass runs without SLG
        steps += SLG_PASS_COST * window_steps(req.steps, req.slg_start, req.slg_end)
    passes = [(width * height * req.batch_size, steps)] * req.n_iter
    if getattr(req, "enable_hr", False):
        if req.hr_resize_x > 0 or req.hr_resize_y > 0:
            w = req.hr_resize_x or round(req.hr_resize_y * width / height)
            h = req.hr_resize_y or round(req.hr_resize_x * height / width)
        else:
            w, h = int(width * req.hr_scale), int(height * req.hr_scale)
        strength = 0.7 if req.denoising_strength is None else float(req.denoising_strength)
        hires_steps = max(1.0, (req.hr_second_pass_steps or req.steps) * strength)
        passes += [(w * h * req.batch_size, hires_steps)] * req.n_iter
    return passes


def describe(seconds: float | None) -> str:
    """ "about 40 s", "about 12 min" (rounded as a person would say it)."""
    if seconds is None:
        return ""
    if seconds < 90:
        return f"about {max(1, round(seconds))} s"
    if seconds < 5400:
        return f"about {round(seconds / 60)} min"
    return f"about {seconds / 3600:.1f} h"


def notice(seconds: float | None, warn_seconds: int) -> str | None:
    """The line the UI and /sdapi/v1/progress show before the job runs; a warning above `warn_seconds`."""
    if seconds is None:
        return None
    text = f"{describe(seconds)} on this device"
    if warn_seconds and seconds > warn_seconds:
        return f"Long job: {text}. Interrupt stops it at any time."
    return text


def step_sample(latents: Any, vae_scale: int) -> int:
    """Pixels of the images a step's latents (n, c, h, w) stand for."""
    shape = getattr(latents, "shape", None)
    if shape is None or len(shape) < 4:
        return 0
    return int(shape[0] * shape[-1] * shape[-2] * vae_scale * vae_scale)


def estimate_request(
    timer: StepTimer, req: Txt2ImgRequest, get_option, active, find
) -> tuple[float | None, str | None]:
    """(seconds, notice) for a request about to be queued, on the checkpoint it will use (`find`: the catalog's)."""
    wanted = str(get_option("sd_model_checkpoint") or "")
    model = model_for_job(active, wanted, find)
    seconds = timer.estimate(model.info.title if model is not None else wanted, job_passes(req, native_size(model)))
    return seconds, notice(seconds, int(get_option("warn_job_seconds") or 0))
