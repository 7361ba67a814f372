"""Easel's img2img and inpaint (queue → plan → pipeline → composite → infotext) against plain diffusers
StableDiffusionImg2ImgPipeline / StableDiffusionInpaintPipeline on the same model, steps and strength.
Prints the ratios of medians (target ≤ 1.05).

    python benchmarks/img2img_overhead.py [--steps 20] [--repeats 5] [--models tiny,mid]
"""

from __future__ import annotations

import argparse

from _common import median, temp_data_dir, timed, write_model


def bench(kind: str, steps: int, repeats: int) -> dict[str, tuple[float, float]]:
    import torch
    from diffusers import (
        EulerAncestralDiscreteScheduler,
        StableDiffusionImg2ImgPipeline,
        StableDiffusionInpaintPipeline,
        StableDiffusionPipeline,
    )
    from PIL import Image, ImageDraw

    from webui.app import Application
    from webui.flags import parse_args
    from webui.generation.requests import Img2ImgRequest
    from webui.models.loader import probe_file, write_config_folder

    data = temp_data_dir()
    path = write_model(kind, data / "models" / "Stable-diffusion")
    app = Application(parse_args(["--data-dir", str(data), "--nowebui"]))
    app.catalog.demo_dir = None
    app.start(wait_for_model=True)
    size = app.models.active.native_size
    image = Image.new("RGB", (size, size), (40, 80, 200))
    ImageDraw.Draw(image).ellipse((size // 4, size // 4, 3 * size // 4, 3 * size // 4), fill=(220, 30, 30))
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).rectangle((size // 3, size // 3, 2 * size // 3, 2 * size // 3), fill=255)
    folder = str(write_config_folder(probe_file(path), data / "cfg"))
    common = dict(
        config=folder, local_files_only=True, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    base = StableDiffusionPipeline.from_single_file(str(path), **common)  # plain diffusers' own single-file load
    out = {}
    for name, cls, m in (
        ("img2img", StableDiffusionImg2ImgPipeline, None),
        ("inpaint", StableDiffusionInpaintPipeline, mask),
    ):
        req = Img2ImgRequest(
            prompt="a blue circle",
            steps=steps,
            seed=1,
            denoising_strength=0.6,
            sampler_name="Euler a",
            width=size,
            height=size,
            mask_blur=0,
            inpainting_fill=1,
        )
        easel = lambda: app.jobs.wait(app.submit_img2img(req, from_api=True, images=[image], mask=m))  # noqa: E731
        pipe = cls(**base.components)
        pipe.set_progress_bar_config(disable=True)
        pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
        # The inpaint pipeline sizes its output from height/width, defaulting to the UNet's sample_size × 8 (not
        # the image's size, as img2img does): without them it ran the tiny model at 512² instead of its 64².
        extra = {"mask_image": m, "height": size, "width": size} if m is not None else {}

        def plain():
            pipe(
                prompt="a blue circle",
                negative_prompt="",
                image=image,
                strength=0.6,
                num_inference_steps=steps,
                guidance_scale=7.0,
                generator=torch.Generator().manual_seed(1),
                **extra,
            )

        easel(), plain()
        te, td = [], []
        for _ in range(repeats):
            te += timed(easel, 1)
            td += timed(plain, 1)
        out[name] = (median(te), median(td))
    app.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--models", default="tiny,mid")
    a = ap.parse_args()
    for kind in a.models.split(","):
        for name, (e, d) in bench(kind, a.steps, a.repeats).items():
            print(
                f"{kind} {name}: easel {e * 1000:.1f} ms, diffusers {d * 1000:.1f} ms, ratio {e / d:.3f} "
                f"(target <= 1.05)"
            )


if __name__ == "__main__":
    main()
