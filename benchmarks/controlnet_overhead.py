"""Easel txt2img with one ControlNet unit (API request → queue → extension → pipeline → infotext) against plain
diffusers `StableDiffusionControlNetPipeline` on the same checkpoint, ControlNet, control image, steps and seed.
The unit uses module "none" with a ready edge map so both sides do the same work; the canny preprocessor's own
cost is printed apart. Both sides run in fp32 (`cpu_precision` fp32), so the ratio is the integration's overhead
(target ≤ 1.05); Easel's default precision (bf16 autocast of the UNet where the CPU has it and the model is big
enough) is timed too and printed as a second ratio.

    python benchmarks/controlnet_overhead.py [--steps 20] [--repeats 5] [--models tiny,mid]
"""

from __future__ import annotations

import argparse
import base64
import io
import sys
import time

from _common import median, temp_data_dir, timed, write_model


def bench(kind: str, steps: int, repeats: int) -> tuple[float, float, float]:
    import torch
    from diffusers import ControlNetModel, EulerAncestralDiscreteScheduler, StableDiffusionControlNetPipeline
    from PIL import Image, ImageDraw

    from webui.app import Application
    from webui.flags import parse_args
    from webui.generation.requests import Txt2ImgRequest
    from webui.models.loader import probe_file, write_config_folder

    data = temp_data_dir()
    path = write_model(kind, data / "models" / "Stable-diffusion")
    folder = str(write_config_folder(probe_file(path), data / "cfg"))
    base = StableDiffusionControlNetPipeline.from_single_file(
        str(path),
        config=folder,
        local_files_only=True,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
        controlnet=None,
    )
    torch.manual_seed(1)
    cn = ControlNetModel.from_unet(base.unet, conditioning_embedding_out_channels=(16, 32, 96, 256)).eval()
    cn.save_pretrained(data / "models" / "ControlNet" / "bench-cn")

    app = Application(parse_args(["--data-dir", str(data), "--nowebui"]))
    app.catalog.demo_dir = None
    app.start(wait_for_model=True)
    size = app.models.active.native_size
    edges = Image.new("RGB", (size, size))
    ImageDraw.Draw(edges).rectangle((size // 4, size // 4, 3 * size // 4, 3 * size // 4), outline=(255, 255, 255))
    buf = io.BytesIO()
    edges.save(buf, format="PNG")
    unit = {
        "enabled": True,
        "module": "none",
        "model": "bench-cn",
        "weight": 1.0,
        "processor_res": size,
        "image": base64.b64encode(buf.getvalue()).decode(),
    }
    req = Txt2ImgRequest(
        prompt="a square",
        steps=steps,
        seed=1,
        sampler_name="Euler a",
        width=size,
        height=size,
        alwayson_scripts={"controlnet": {"args": [unit]}},
    )
    easel = lambda: app.jobs.wait(app.submit_txt2img(req, from_api=True))  # noqa: E731

    pipe = StableDiffusionControlNetPipeline(**{**base.components, "controlnet": cn})
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(app.models.active.scheduler_config)

    def plain():
        pipe(
            prompt="a square",
            negative_prompt="",
            image=edges,
            num_inference_steps=steps,
            guidance_scale=7.0,
            height=size,
            width=size,
            generator=torch.Generator().manual_seed(1),
        )

    app.options.set({"cpu_precision": "fp32"}, persist=False)
    easel(), plain()
    te, td = [], []
    for _ in range(repeats):
        te += timed(easel, 1)
        td += timed(plain, 1)
    app.options.set({"cpu_precision": "Automatic"}, persist=False)
    easel()
    t_default = median(timed(easel, max(1, repeats // 2)))
    app.stop()

    script = app.extensions.find_script("ControlNet", "txt2img")[1]
    pre = sys.modules[type(script).__module__].lib("preprocessors")  # the extension's own preprocessor code
    canny = pre.registry(None)["canny"]
    t0 = time.perf_counter()
    for _ in range(repeats):
        pre.run(canny, edges, resolution=size, threshold_a=100, threshold_b=200)
    return median(te), median(td), (time.perf_counter() - t0) / repeats, t_default


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--models", default="tiny,mid")
    a = ap.parse_args()
    for kind in a.models.split(","):
        e, d, canny, default = bench(kind, a.steps, a.repeats)
        print(
            f"{kind} controlnet txt2img, fp32 both: easel {e * 1000:.1f} ms, diffusers {d * 1000:.1f} ms, "
            f"ratio {e / d:.3f} (target <= 1.05); Easel's default precision {default * 1000:.1f} ms, ratio "
            f"{default / d:.3f}; canny preprocessing {canny * 1000:.1f} ms per image",
            flush=True,
        )


if __name__ == "__main__":
    main()
