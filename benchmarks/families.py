"""FLUX.1 and SD 3.5 (#18): Easel's txt2img (queue → plan → the family's diffusers pipeline → infotext) against plain
diffusers FluxPipeline / StableDiffusion3Pipeline on the same tiny model (the same weights, built in memory by the
test factories; Easel reads them from the transformer-only + separate parts files users have), same steps, size,
guidance and T5 length; ratio of medians and the median of the per-round ratios (target <= 1.03), with an A/A ratio
(diffusers against itself in the same rounds) for the noise floor. Also: cold load (files → pipeline) and a cached
switch (SD 1.x tiny → this model, both in RAM).

    python benchmarks/families.py [--steps 20] [--repeats 3] [--size 64]

The mid-size FLUX-shaped model (its Easel/diffusers ratio, and peak RSS in bf16 / GGUF Q8_0 / Q4_0) is measured by
benchmarks/families_memory.py.
"""

from __future__ import annotations

import argparse
import subprocess
import time

from _common import median, temp_data_dir, timed, write_model

PROMPT = "a red circle on a blue background"


def cpu_name() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "?")


def bench(family: str, steps: int, repeats: int, size: int) -> dict[str, float]:
    import torch

    from tests.factories_families import tiny_flux_pipeline, tiny_sd3_pipeline, write_flux_split, write_sd3_split
    from webui.app import Application
    from webui.flags import parse_args
    from webui.generation.requests import Txt2ImgRequest

    data = temp_data_dir()
    models = data / "models"
    write_model("tiny", models / "Stable-diffusion")
    if family == "flux":
        write_flux_split(models, seed=0, dev=True)
        title, pipe = "flux1-dev-tiny", tiny_flux_pipeline(0, dev=True)
        req_extra, plain_extra = (
            dict(cfg_scale=1.0, distilled_cfg_scale=3.5),
            dict(guidance_scale=3.5, max_sequence_length=512),
        )
    else:
        write_sd3_split(models, seed=0, variant="sd35-medium")
        title, pipe = "sd35_medium_tiny", tiny_sd3_pipeline(0, variant="sd35-medium")
        req_extra, plain_extra = (
            dict(cfg_scale=5.0),
            dict(guidance_scale=5.0, negative_prompt="", max_sequence_length=256),
        )
    pipe.set_progress_bar_config(disable=True)
    app = Application(parse_args(["--data-dir", str(data), "--nowebui"]))
    pipe.to(dtype=app.models.policy.flow_dtype)  # Easel's compute dtype for SD 3/FLUX (bf16 on a bf16 CPU)
    app.catalog.demo_dir = None
    app.start(wait_for_model=True)
    app.models.unload()  # nothing in RAM: the next load reads the files
    t0 = time.perf_counter()
    app.models.load(title)
    cold = time.perf_counter() - t0
    assert app.models.load("tiny").info.path.stem == "tiny"
    t0 = time.perf_counter()
    app.models.load(title)
    switch = time.perf_counter() - t0
    app.options.set({"sd_model_checkpoint": title})
    req = Txt2ImgRequest(prompt=PROMPT, steps=steps, seed=1, sampler_name="Euler", width=size, height=size, **req_extra)
    easel = lambda: app.jobs.wait(app.submit_txt2img(req, from_api=True))  # noqa: E731

    def plain():
        pipe(
            prompt=PROMPT,
            num_inference_steps=steps,
            height=size,
            width=size,
            generator=torch.Generator().manual_seed(1),
            **plain_extra,
        )

    easel(), plain()  # warm-up
    te, td, ta = [], [], []
    for _ in range(repeats):  # interleaved, so drift in machine load hits both sides alike
        te += timed(easel, 1)
        td += timed(plain, 1)
        ta += timed(plain, 1)  # plain again: the A/A pair shows how far two identical runs differ here
    app.stop()
    return {
        "easel": median(te),
        "diffusers": median(td),
        "paired": median([e / d for e, d in zip(te, td)]),
        "a_a": median([a / d for a, d in zip(ta, td)]),
        "cold": cold,
        "switch": switch,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--families", default="flux,sd3")
    a = ap.parse_args()
    print(f"CPU: {cpu_name()}; {a.steps} steps at {a.size}x{a.size}, median of {a.repeats}")
    for family in a.families.split(","):
        r = bench(family, a.steps, a.repeats, a.size)
        print(
            f"{family}: easel {r['easel'] * 1000:.1f} ms, diffusers {r['diffusers'] * 1000:.1f} ms, "
            f"ratio {r['easel'] / r['diffusers']:.3f}, paired {r['paired']:.3f} (target <= 1.03; A/A "
            f"diffusers/diffusers {r['a_a']:.3f}); cold load {r['cold']:.2f} s, "
            f"cached switch {r['switch'] * 1000:.1f} ms"
        )


if __name__ == "__main__":
    main()
