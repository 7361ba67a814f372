"""Speed presets (#21) on the bundled demo model: end-to-end time against the preset off, and what they cost.

    .venv/bin/python benchmarks/presets.py [--size 64] [--steps 20] [--rounds 5] [--adherence 60] [--threads 2]

1. Time: txt2img through the Application (queue, plan, text encoder, UNet, VAE decode, PNG), one image, Euler a,
   `--steps` steps at `--size`². Each round runs every row once, the order rotated from round to round, so the
   rows share the machine's load; the ratio is the median over rounds of (off in that round) / (row in that round).
2. Pixels: PSNR in dB of each row's image against the preset-off image of the same seed (same round 1 job).
3. Prompt adherence (`--adherence N`, 0 to skip): tools/demo_model/evaluate.py's analyser over N fresh grammar
   prompts (one prompt seed for all rows, printed), the presets applied through the runtime exactly as a job does.

Prints `lscpu`'s model name and the load average before and after: other processes on a shared machine move the
absolute seconds, the paired ratios less. The process's CPU seconds per job (`time.process_time`, all its threads)
are printed beside the wall time: on a loaded machine they follow the work done far more closely (with
`--threads 1` they are the job's compute, give or take cache contention).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._common import temp_data_dir  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "models" / "Demo" / "easel-demo.safetensors"
# (label, override_settings): the rows; "off" first is the reference
ROWS: list[tuple[str, dict]] = [
    ("off", {}),
    ("Step cache: 2", {"step_cache_interval": 2}),
    ("Step cache: 3", {"step_cache_interval": 3}),
    ("Step cache: 4", {"step_cache_interval": 4}),
    ("Token merging ratio: 0.5", {"token_merging_ratio": 0.5}),
    ("Step cache: 3 + ToMe 0.5", {"step_cache_interval": 3, "token_merging_ratio": 0.5}),
]


def cpu_name() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "?")


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def psnr(a, b) -> float:
    import numpy as np

    mse = float(np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * float(np.log10(255**2 / mse))


def time_rows(app, rows, size: int, steps: int, rounds: int) -> tuple[dict, dict, dict]:
    from webui.generation.requests import Txt2ImgRequest

    def job(overrides: dict, n_steps: int):
        req = Txt2ImgRequest(
            prompt="a red circle on a blue background",
            seed=1,
            sampler_name="Euler a",
            width=size,
            height=size,
            steps=n_steps,
            override_settings=overrides,
        )
        t0, c0 = time.perf_counter(), time.process_time()
        result = app.jobs.wait(app.submit_txt2img(req, from_api=True))
        return time.perf_counter() - t0, time.process_time() - c0, result

    for _, overrides in rows:  # warm-up: every row's first call (hooks, allocator) outside the timings
        job(overrides, 2)
    seconds: dict[str, list[float]] = {label: [] for label, _ in rows}
    cpu: dict[str, list[float]] = {label: [] for label, _ in rows}
    images: dict[str, object] = {}
    for r in range(rounds):
        order = rows[r % len(rows) :] + rows[: r % len(rows)]
        for label, overrides in order:
            s, c, result = job(overrides, steps)
            seconds[label].append(s)
            cpu[label].append(c)
            images.setdefault(label, result.images[0])
    return seconds, cpu, images


def adherence(pipe, rows, n: int, seed: int, size: int, steps: int) -> dict[str, dict]:
    from tools.demo_model.evaluate import evaluate
    from webui.models import runtime

    out = {}
    for label, overrides in rows:
        config = runtime.RuntimeConfig(
            step_cache=int(overrides.get("step_cache_interval", 0)),
            token_merging=float(overrides.get("token_merging_ratio", 0.0)),
        )
        with contextlib.ExitStack() as stack:
            stack.enter_context(runtime.step_cache(pipe, config))
            stack.enter_context(runtime.token_merging(pipe, config))
            # batches of 30 at 64²; fewer at larger sizes, where a batch's attention would not fit in RAM
            out[label] = evaluate(pipe, n, seed, size=size, steps=steps, batch=max(1, 30 * 64 * 64 // size**2))
        print(
            f"  {label:28s} colour {out[label]['colour']:.1%}  shape {out[label]['shape']:.1%}  "
            f"({out[label]['seconds']:.0f} s)",
            flush=True,
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=64, help="the demo model's native size is 64")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--adherence", type=int, default=60, help="prompts for the adherence analyser (0: skip)")
    ap.add_argument("--seed", type=int, default=None, help="prompt seed for the adherence run (default: random)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rows", default="", help="comma-separated row numbers to run (0 = off is always run)")
    a = ap.parse_args()

    import torch

    from webui.app import Application
    from webui.flags import parse_args

    rows = ROWS if not a.rows else [ROWS[0]] + [ROWS[int(i)] for i in a.rows.split(",") if int(i) != 0]
    app = Application(
        parse_args(["--data-dir", str(temp_data_dir()), "--nowebui", "--threads", str(a.threads), "--ckpt", str(DEMO)]),
        owns_process=True,
    )
    app.start(wait_for_model=True)
    print(
        f"CPU: {cpu_name()}; {torch.get_num_threads()} threads; demo model {DEMO.name}; {a.size}², {a.steps} steps, "
        f"Euler a, {a.rounds} rounds; load average {load()}",
        flush=True,
    )
    seconds, cpu, images = time_rows(app, rows, a.size, a.steps, a.rounds)
    print(f"load average after the timings: {load()}")
    print(
        "\n| preset | e2e wall s (median) | ×off wall (median of paired ratios, range) | e2e CPU s (median) "
        "| ×off CPU (median, range) | PSNR vs off (dB) |"
    )
    print("|---|---|---|---|---|---|")
    for label, _ in rows:
        wall = [o / s for o, s in zip(seconds["off"], seconds[label])]
        used = [o / s for o, s in zip(cpu["off"], cpu[label])]
        print(
            f"| {label} | {statistics.median(seconds[label]):.3f} | ×{statistics.median(wall):.2f} "
            f"({min(wall):.2f}–{max(wall):.2f}) | {statistics.median(cpu[label]):.3f} | "
            f"×{statistics.median(used):.2f} ({min(used):.2f}–{max(used):.2f}) | "
            f"{psnr(images['off'], images[label]):.1f} |"
        )
    if a.adherence:
        seed = a.seed if a.seed is not None else int.from_bytes(os.urandom(4), "little")
        print(f"\nadherence over {a.adherence} prompts, prompt seed {seed} (same prompts and noise for every row):")
        active = app.models.active
        assert active is not None
        pipe = active.pipeline
        res = adherence(pipe, rows, a.adherence, seed, a.size, a.steps)
        base = res["off"]
        print("\n| preset | colour | shape | Δ colour (points) | Δ shape (points) |")
        print("|---|---|---|---|---|")
        for label, _ in rows:
            r = res[label]
            print(
                f"| {label} | {r['colour']:.1%} | {r['shape']:.1%} | {100 * (r['colour'] - base['colour']):+.1f} "
                f"| {100 * (r['shape'] - base['shape']):+.1f} |"
            )
    print(f"load average at the end: {load()}")
    app.stop()


if __name__ == "__main__":
    main()
