"""Issue 21's end-to-end comparison with every side in one process, alternating: plain diffusers fp32, plain
OpenVINO bf16 (the whole pipeline: UNet, text encoder and VAE decoder converted, as optimum-intel's OpenVINO pipeline
does, with OpenVINO's own bf16 inference precision and no marks), Easel's default and Easel's `cpu_backend=openvino`.

Why one process: the end-to-end rows of cpu_fast_path.py each run in their own process, one after another, so a
slow spell of the shared machine lands on one row; here each round runs every side once, the first side rotating,
and the ratios are medians of the per-round ratios against plain diffusers fp32 in the same round.

The plain sides are a `StableDiffusionPipeline` read from the same checkpoint file by diffusers' own single-file
loader (Easel's shipped configs as `config=`); the OpenVINO one is a second copy whose UNet, text encoder and VAE
decoder forwards call the compiled models (static shapes, `INFERENCE_PRECISION_HINT` bf16). Both plain sides use the
same generator seed, so their images compare pixel for pixel (PSNR printed). Easel's sides run through the
Application (queue, plan, infotext, PNG encode; nothing saved to disk). Samplers: Euler everywhere (deterministic
after the initial noise).

    python benchmarks/e2e_paired.py --size 512 --steps 20 --rounds 2      # SD 1.5-sized, random weights; ~20 min idle
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

PROMPT = "a red circle on a blue background"


def psnr(a, b) -> float:
    import numpy as np

    x, y = (np.asarray(i.convert("RGB"), dtype=np.float64) for i in (a, b))
    mse = float(((x - y) ** 2).mean())
    return float("inf") if mse == 0 else 10 * float(np.log10(255.0**2 / mse))


def openvino_pipeline(pipe, size: int, threads: int):
    """A copy of `pipe` whose UNet, text encoder and VAE decoder run OpenVINO bf16 models (seconds it took)."""
    import numpy as np
    import openvino as ov
    import torch

    core, t0 = ov.Core(), time.perf_counter()
    config = {"INFERENCE_PRECISION_HINT": "bf16", "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
    ov_pipe = copy.copy(pipe)  # the same scheduler and tokenizer; the three networks are replaced below
    unet, te, vae = (copy.deepcopy(m) for m in (pipe.unet, pipe.text_encoder, pipe.vae))
    latent = size // 8

    class Unet(torch.nn.Module):
        def __init__(self, u):
            super().__init__()
            self.u = u

        def forward(self, sample, timestep, context):
            return self.u(sample, timestep, encoder_hidden_states=context, return_dict=False)[0]

    class Text(torch.nn.Module):
        def __init__(self, t):
            super().__init__()
            self.t = t

        def forward(self, ids):
            return self.t(ids)[0]

    with torch.no_grad():
        example = (torch.ones(2, 4, latent, latent), torch.tensor(500.0), torch.ones(2, 77, 768))
        unet_ov = core.compile_model(ov.convert_model(Unet(unet), example_input=example), "CPU", config)
        ids = torch.ones(1, 77, dtype=torch.int64)
        te_ov = core.compile_model(ov.convert_model(Text(te), example_input=(ids,)), "CPU", config)
        z = torch.ones(1, 4, latent, latent)
        dec_ov = core.compile_model(ov.convert_model(vae.decoder, example_input=(z,)), "CPU", config)

    def unet_forward(sample, timestep, encoder_hidden_states=None, return_dict=False, **_):
        t = np.array(float(timestep), dtype=np.float32)
        out = unet_ov([sample.numpy(), t, encoder_hidden_states.numpy()])[0]
        return (torch.from_numpy(out.copy()),)

    def text_forward(input_ids, attention_mask=None, **_):
        return (torch.from_numpy(te_ov([input_ids.numpy()])[0].copy()),)

    def decoder_forward(z, latent_embeds=None):
        return torch.from_numpy(dec_ov([z.numpy()])[0].copy())

    # a benchmark's stand-ins on its own copies (Easel's code puts methods on library objects only in its runtime)
    unet.forward, te.forward, vae.decoder.forward = unet_forward, text_forward, decoder_forward
    ov_pipe.register_modules(unet=unet, text_encoder=te, vae=vae)
    return ov_pipe, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch and OpenVINO threads (0: the physical cores)")
    ap.add_argument("--sides", default="", help="sides to run, separated by ; (default: all; plain fp32 always)")
    a = ap.parse_args()

    import torch
    from _common import temp_data_dir
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline
    from e2e_breakdown import write_sd15

    from webui.app import Application
    from webui.flags import parse_args
    from webui.generation.requests import Txt2ImgRequest
    from webui.models.device import physical_cores
    from webui.models.probe import CONFIGS_DIR

    threads = a.threads or physical_cores()
    torch.set_num_threads(threads)
    data = temp_data_dir()
    ckpt = write_sd15(data / "models" / "Stable-diffusion")
    plain = StableDiffusionPipeline.from_single_file(
        str(ckpt),
        config=str(CONFIGS_DIR / "sd15"),
        local_files_only=True,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    plain.scheduler = EulerDiscreteScheduler.from_config(plain.scheduler.config)
    plain.set_progress_bar_config(disable=True)
    ov_pipe = None  # built only when its side runs (conversion: ~3 min at 512²)
    if not a.sides or "plain OpenVINO bf16" in a.sides:
        ov_pipe, ov_seconds = openvino_pipeline(plain, a.size, threads)
        print(f"plain OpenVINO pipeline converted and compiled in {ov_seconds:.0f} s", flush=True)

    app = Application(parse_args(["--data-dir", str(data), "--nowebui", "--ckpt", str(ckpt)]), owns_process=True)
    app.catalog.demo_dir = None
    app.start(wait_for_model=True)

    def easel(backend: str, steps: int, attention: str = "Automatic"):
        req = Txt2ImgRequest(
            prompt=PROMPT, seed=1, sampler_name="Euler", width=a.size, height=a.size, steps=steps,
            override_settings={"samples_save": False, "cpu_backend": backend, "cpu_attention": attention},
        )  # fmt: skip
        return app.jobs.wait(app.submit_txt2img(req, from_api=True)).images[0]

    def diffusers_side(pipe, steps: int):
        with torch.no_grad():
            generator = torch.Generator().manual_seed(1)
            return pipe(PROMPT, num_inference_steps=steps, width=a.size, height=a.size, generator=generator).images[0]

    sides = {
        "plain diffusers fp32": lambda steps: diffusers_side(plain, steps),
        "plain OpenVINO bf16": lambda steps: diffusers_side(ov_pipe, steps),
        "Easel default": lambda steps: easel("torch", steps),
        "Easel default, cpu_attention torch": lambda steps: easel("torch", steps, "torch"),
        "Easel cpu_backend=openvino": lambda steps: easel("openvino", steps),
    }
    if a.sides:
        wanted = {"plain diffusers fp32", *(x.strip() for x in a.sides.split(";"))}
        sides = {k: v for k, v in sides.items() if k in wanted}
    for name, side in sides.items():  # warm-up: oneDNN primitives, OpenVINO compiles, Easel's IR conversion
        t0 = time.perf_counter()
        side(1)
        print(f"warm-up {name}: {time.perf_counter() - t0:.1f} s", flush=True)
    names = list(sides)
    times: dict[str, list[float]] = {n: [] for n in names}
    images: dict = {}
    for r in range(a.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t0 = time.perf_counter()
            images[name] = sides[name](a.steps)
            times[name].append(time.perf_counter() - t0)
            print(f"round {r + 1} {name}: {times[name][-1]:.1f} s", flush=True)
    base = "plain diffusers fp32"
    print(f"\n{a.size}², {a.steps} steps, Euler, CFG 7, {threads} threads, {a.rounds} rounds (SD 1.5-sized, random)")
    for name in names:
        ratios = [b / t for b, t in zip(times[base], times[name])]
        print(
            f"  {name:36s} {statistics.median(times[name]):7.1f} s  ×{statistics.median(ratios):.2f} "
            f"(rounds {' '.join(f'{x:.2f}' for x in ratios)})  "
            f"PSNR vs plain fp32 {psnr(images[base], images[name]):.1f} dB",
            flush=True,
        )
    app.stop()


if __name__ == "__main__":
    main()
