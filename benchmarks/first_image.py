"""#21 target 3: the process's first image, and the first image at a new resolution, against a warm image of the
same size, through the production path (Application → queue → plan → pipeline → decode → infotext → PNG), on an
SD 1.5-sized checkpoint with random weights (the shipped SD1.5 configs, written in A1111 layout). The model load
itself is not counted: the clock starts when the loaded server takes the request.

What a first call pays once, and where it is cached: oneDNN's primitives per shape (in-process, oneDNN's own
primitive cache), the first touch of the bf16 weights, and the VAE precision guard (once per VAE per process,
`webui/models/vae_precision.py`). Nothing is compiled on the default path.

    python benchmarks/first_image.py [--sizes 256 320] [--steps 20]

Order in one process: first at size A, warm A, first at size B, warm B, warm A again. Ratios: first / median warm of
the same size. Target: ≤ ×1.5.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from _common import temp_data_dir
from e2e_breakdown import write_sd15


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs=2, default=[256, 320])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--ckpt", default="", help="an existing checkpoint instead of writing the random SD1.5 one")
    a = ap.parse_args()

    import torch

    from webui.app import Application
    from webui.flags import parse_args
    from webui.generation.requests import Txt2ImgRequest

    data = temp_data_dir()
    ckpt = Path(a.ckpt) if a.ckpt else write_sd15(data / "models" / "Stable-diffusion")
    app = Application(parse_args(["--data-dir", str(data), "--nowebui", "--ckpt", str(ckpt)]), owns_process=True)
    app.catalog.demo_dir = None
    app.start(wait_for_model=True)

    def one(size: int) -> float:
        req = Txt2ImgRequest(
            prompt="a red circle on a blue background",
            seed=1,
            sampler_name="Euler a",
            steps=a.steps,
            width=size,
            height=size,
            override_settings={"samples_save": True},
        )
        t0 = time.perf_counter()
        app.jobs.wait(app.submit_txt2img(req, from_api=True))
        return time.perf_counter() - t0

    size_a, size_b = a.sizes
    print(f"{torch.get_num_threads()} threads, {a.steps} steps, sizes {size_a}² then {size_b}²", flush=True)
    runs: dict[str, list[float]] = {"first A": [], "warm A": [], "first B": [], "warm B": []}
    for label, size in (
        ("first A", size_a),
        ("warm A", size_a),
        ("first B", size_b),
        ("warm B", size_b),
        ("warm A", size_a),
    ):
        runs[label].append(one(size))
        print(f"  {label} ({size}²): {runs[label][-1]:.1f} s", flush=True)
    warm_a, warm_b = statistics.median(runs["warm A"]), statistics.median(runs["warm B"])
    print(f"first image of the process / warm, {size_a}²: ×{runs['first A'][0] / warm_a:.2f}")
    print(f"first image at a new size / warm, {size_b}²: ×{runs['first B'][0] / warm_b:.2f}")
    app.stop()


if __name__ == "__main__":
    main()
