"""Generate prompts from the demo grammar with a pipeline and score them with the analyser.

    HF_HUB_OFFLINE=1 .venv/bin/python tools/demo_model/evaluate.py [--n 60] [--seed S] [--sampler euler_a]
        [--steps 20] [--cfg 7] [--model models/Demo/easel-demo.safetensors] [--save-dir DIR]

Loads the file through `webui.models.loader.build_from_single_file`, exactly as the app does. Without --seed the
prompt/noise seed comes from os.urandom and is printed, so every run is a fresh sample of prompts.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tools.demo_model.analyse import score  # noqa: E402
from tools.demo_model.dataset import caption, random_prompts  # noqa: E402

DEFAULT_MODEL = REPO / "models" / "Demo" / "easel-demo.safetensors"
DEFAULT_SAMPLER, DEFAULT_STEPS, DEFAULT_CFG = "euler_a", 20, 7.0  # A1111's defaults: Euler a, 20 steps, CFG 7


def make_scheduler(name: str, config: dict):
    from diffusers import DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler, EulerDiscreteScheduler

    if name == "euler_a":
        return EulerAncestralDiscreteScheduler.from_config(config)
    if name == "euler":
        return EulerDiscreteScheduler.from_config(config)
    if name == "dpmpp_2m":
        return DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++")
    raise ValueError(f"unknown sampler {name!r}")


def load_pipeline(model: Path = DEFAULT_MODEL, cache_root: Path | None = None):
    from webui.models.loader import build_from_single_file

    cache = Path(cache_root) if cache_root else Path(tempfile.gettempdir()) / "easel-demo-eval-cache"
    return build_from_single_file(Path(model), cache)


@torch.no_grad()
def generate(
    pipe,
    prompts: list[str],
    seeds: list[int],
    *,
    sampler: str = DEFAULT_SAMPLER,
    steps: int = DEFAULT_STEPS,
    cfg: float = DEFAULT_CFG,
    size: int = 64,
    batch: int = 30,
    scheduler_config: dict | None = None,
):
    """One image per prompt (PIL), each from its own seed; the pipeline's scheduler is replaced by `sampler`."""
    pipe.scheduler = make_scheduler(sampler, scheduler_config or dict(pipe.scheduler.config))
    pipe.set_progress_bar_config(disable=True)
    images = []
    for i in range(0, len(prompts), batch):
        ps, ss = prompts[i : i + batch], seeds[i : i + batch]
        gens = [torch.Generator("cpu").manual_seed(s) for s in ss]
        out = pipe(
            ps,
            negative_prompt=[""] * len(ps),
            num_inference_steps=steps,
            guidance_scale=cfg,
            height=size,
            width=size,
            generator=gens,
            output_type="pil",
        )
        images.extend(out.images)
    return images


def evaluate(pipe, n: int = 60, seed: int | None = None, *, details: list | None = None, **kw) -> dict:
    """Score `n` fresh grammar prompts. Returns {"colour", "shape", "n", "seed", "seconds"}."""
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "little")
    triples = random_prompts(n, seed)
    prompts = [caption(c, s, b) for c, s, b in triples]
    seeds = [(seed + 7919 * i) % (2**31) for i in range(n)]
    t0 = time.time()
    images = generate(pipe, prompts, seeds, **kw)
    res = score(prompts, images, details=details)
    res.update(seed=seed, seconds=round(time.time() - t0, 2))
    if details is not None:
        for row, img, s in zip(details[-n:], images, seeds):
            row["image"], row["seed"] = img, s
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--sampler", default=DEFAULT_SAMPLER, choices=["euler_a", "euler", "dpmpp_2m"])
    ap.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    ap.add_argument("--cfg", type=float, default=DEFAULT_CFG)
    ap.add_argument("--save-dir", type=Path, default=None, help="write every image and a sheet here")
    ap.add_argument("--verbose", action="store_true", help="print every prompt's verdict")
    args = ap.parse_args()
    torch.set_num_threads(2)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    t0 = time.time()
    loaded = load_pipeline(args.model)
    print(
        f"loaded {args.model} ({args.model.stat().st_size / 2**20:.2f} MiB) in {time.time() - t0:.1f}s; "
        f"native size {loaded.probe.native_size}"
    )
    details: list = []
    res = evaluate(
        loaded.pipeline,
        args.n,
        args.seed,
        details=details,
        sampler=args.sampler,
        steps=args.steps,
        cfg=args.cfg,
        size=loaded.probe.native_size,
    )
    per_shape: dict[str, list[int]] = {}
    for row in details:
        shape = row["prompt"].split(" on ")[0].split()[-1]
        per_shape.setdefault(shape, []).append(int(row["shape_ok"]))
        if args.verbose or not (row["colour_ok"] and row["shape_ok"]):
            a = row["analysis"]
            flag = "ok " if row["colour_ok"] and row["shape_ok"] else "BAD"
            print(
                f"  {flag} seed={row['seed']:<10} {row['prompt']:<45} → colours={a['colours']} shape={a['shape']} "
                f"iou={a['iou']}"
            )
    print(
        f"seed={res['seed']} prompts={res['n']} sampler={args.sampler} steps={args.steps} cfg={args.cfg} "
        f"time={res['seconds']}s"
    )
    print("per shape: " + ", ".join(f"{k} {sum(v)}/{len(v)}" for k, v in sorted(per_shape.items())))
    print(f"colour {res['colour'] * 100:.1f}%  shape {res['shape'] * 100:.1f}%")
    if args.save_dir:
        from PIL import Image

        args.save_dir.mkdir(parents=True, exist_ok=True)
        sheet = Image.new("RGB", (64 * 10, 64 * ((len(details) + 9) // 10)))
        for i, row in enumerate(details):
            row["image"].save(args.save_dir / f"{i:03d}_{row['prompt'].replace(' ', '_')}.png")
            sheet.paste(row["image"].resize((64, 64)), ((i % 10) * 64, (i // 10) * 64))
        sheet.save(args.save_dir / "sheet.png")


if __name__ == "__main__":
    main()
