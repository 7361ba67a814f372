"""Easel's txt2img service (queue → plan → pipeline → infotext) against plain diffusers StableDiffusionPipeline on the
same single-file model, steps, sampler and size. Prints the ratio of medians (target ≤ 1.03).

    python benchmarks/txt2img_overhead.py [--steps 20] [--repeats 5] [--models tiny,mid]
"""

from __future__ import annotations

import argparse

from _common import median, temp_data_dir, timed, write_model


def bench(kind: str, steps: int, repeats: int) -> tuple[float, float]:
    import torch
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionPipeline

    from webui.app import Application
    from webui.flags import parse_args
    from webui.generation.requests import Txt2ImgRequest
    from webui.models.loader import probe_file, write_config_folder

    data = temp_data_dir()
    path = write_model(kind, data / "models" / "Stable-diffusion")
    app = Application(parse_args(["--data-dir", str(data), "--nowebui"]))
    app.catalog.demo_dir = None
    app.start(wait_for_model=True)
    size = app.models.active.native_size
    req = Txt2ImgRequest(
        prompt="a red circle on a blue background", steps=steps, seed=1, sampler_name="Euler a", width=size, height=size
    )
    easel = lambda: app.jobs.wait(app.submit_txt2img(req, from_api=True))  # noqa: E731

    folder = write_config_folder(probe_file(path), data / "cfg")
    pipe = StableDiffusionPipeline.from_single_file(
        str(path),
        config=str(folder),
        local_files_only=True,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)

    def plain():
        pipe(
            prompt="a red circle on a blue background",
            negative_prompt="",
            num_inference_steps=steps,
            height=size,
            width=size,
            generator=torch.Generator().manual_seed(1),
        )

    easel(), plain()  # warm-up
    te, td = [], []
    for _ in range(repeats):  # interleave, so drift in machine load hits both sides alike
        te += timed(easel, 1)
        td += timed(plain, 1)
    app.stop()
    return median(te), median(td)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--models", default="tiny,mid")
    a = ap.parse_args()
    for kind in a.models.split(","):
        e, d = bench(kind, a.steps, a.repeats)
        print(f"{kind}: easel {e * 1000:.1f} ms, diffusers {d * 1000:.1f} ms, ratio {e / d:.3f} (target <= 1.03)")


if __name__ == "__main__":
    main()
