"""Following a queued job from a Gradio generator: place in the queue, then step x/y, ETA and the live preview."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any, Iterator

POLL_SECONDS = 0.3


@dataclass
class Snapshot:
    html: str  # the progress line, ready for a gr.HTML
    preview: Any = None  # a new live-preview PIL image, or None when it has not changed
    running: bool = False


def _seconds(s: float) -> str:
    s = max(0, int(round(s)))
    return f"{s // 60}m {s % 60:02d}s" if s >= 60 else f"{s}s"


def progress_line(jobs, job) -> tuple[str, float | None, bool]:
    """(text, fraction or None, running) for a job: "Queued: position N" while it waits, then its steps."""
    pos = jobs.position(job.id)
    if pos is None:
        return ("Finishing…" if not job.done.is_set() else "Done"), None, False
    note = f" · {job.notice}" if getattr(job, "notice", None) else ""  # "about 2 min on this device"
    if pos >= 1:
        return f"Queued: position {pos}{note}", None, False
    c = job.control
    if not c.sampling_steps:
        return f"Starting… (loading the model if needed){note}", 0.0, True
    frac = c.progress
    parts = []
    if c.cell_count > 1:  # a plot (X/Y/Z): its cells, and the fraction and ETA cover the whole plot
        parts.append(f"Cell {c.cell_no + 1}/{c.cell_count}")
    if c.job_count > 1:
        parts.append(f"Batch {c.job_no + 1}/{c.job_count}")
    parts.append(f"Step {c.sampling_step}/{c.sampling_steps}")
    parts.append(f"{frac * 100:.0f}%")
    if frac > 0:
        parts.append(f"ETA {_seconds(c.eta())}")
    if c.interrupted:
        parts.append("interrupting…")
    return " · ".join(parts), frac, True


def progress_html(text: str, frac: float | None) -> str:
    bar = f'<progress value="{frac:.3f}" max="1"></progress>' if frac is not None else ""
    warn = ' class="easel-warn"' if "Long job:" in text else ""
    return f'<div class="easel-progress">{bar}<span{warn}>{html.escape(text)}</span></div>'


def follow(jobs, job, interval: float = POLL_SECONDS) -> Iterator[Snapshot]:
    """Yield a Snapshot at once and then every `interval` seconds until the job ends."""
    last_preview = None
    while True:
        text, frac, running = progress_line(jobs, job)
        image = job.control.current_image if running else None
        fresh = image if image is not None and image is not last_preview else None
        if fresh is not None:
            last_preview = image
        yield Snapshot(html=progress_html(text, frac), preview=fresh, running=running)
        if job.done.wait(interval):
            return
