"""What the model runtime's hooks cost (#17 item 7): one diffusers txt2img call on a plain diffusers pipeline against
the same call on Easel's loaded model inside `model.runtime.configure(...)` (the job's context: VAE memory switches,
the UNet precision hook, the VAE precision, the interrupt pre-hooks on every block) and the per-call `bf16_weights`.
Both sides run fp32 with the same weights, prompt embeddings, latents and scheduler, alternated so drift in machine
load hits both alike; a side's time includes entering and leaving the runtime, as a job does once per batch loop.
Prints medians, their ratio (1.00: no cost), and the largest pixel difference of the two outputs.

    python benchmarks/runtime_overhead.py [--steps 20] [--repeats 9] [--models tiny,mid] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import subprocess

from _common import median, temp_data_dir, timed, write_model


def cpu_model() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "?")


def bench(kind: str, steps: int, repeats: int) -> tuple[float, float, float, float]:
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    from webui.generation.control import JobControl
    from webui.models.loader import probe_file, write_config_folder
    from webui.models.precision import bf16_weights
    from webui.models.runtime import RuntimeConfig

    from webui.app import Application
    from webui.flags import parse_args

    data = temp_data_dir()
    path = write_model(kind, data / "models" / "Stable-diffusion")
    app = Application(parse_args(["--data-dir", str(data), "--nowebui"]))
    app.catalog.demo_dir = None
    app.start(wait_for_model=True)
    model = app.models.active
    assert model is not None
    easel_pipe, size = model.pipeline, model.native_size
    folder = write_config_folder(probe_file(path), data / "cfg")
    plain_pipe = StableDiffusionPipeline.from_single_file(
        str(path),
        config=str(folder),
        local_files_only=True,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    for pipe in (plain_pipe, easel_pipe):
        pipe.set_progress_bar_config(disable=True)
        pipe.scheduler = EulerDiscreteScheduler.from_config(plain_pipe.scheduler.config)
    with torch.no_grad():
        embeds, negative = plain_pipe.encode_prompt("a red circle on a blue background", "cpu", 1, True, "")
    scale = plain_pipe.vae_scale_factor
    latents = torch.randn((1, 4, size // scale, size // scale), generator=torch.Generator().manual_seed(1))
    config = RuntimeConfig(precision="fp32", vae_precision="fp32", width=size, height=size, batch_size=1)
    out: dict[str, torch.Tensor] = {}

    def call(pipe, name: str) -> None:
        out[name] = pipe(
            prompt_embeds=embeds,
            negative_prompt_embeds=negative,
            num_inference_steps=steps,
            latents=latents.clone(),
            guidance_scale=7.0,
            output_type="pt",
        ).images

    def plain() -> None:
        call(plain_pipe, "plain")

    def easel() -> None:
        with model.runtime.configure(config, JobControl()), bf16_weights(easel_pipe):
            call(easel_pipe, "easel")

    def enter_and_leave() -> None:  # the runtime's fixed cost per job, without a pipeline call
        with model.runtime.configure(config, JobControl()), bf16_weights(easel_pipe):
            pass

    plain(), easel()  # warm-up (and the runtime's once-per-model hook install)
    fixed = median(timed(enter_and_leave, 20))
    tp, te = [], []
    for i in range(repeats):  # alternate, and swap which side goes first each round
        for side in (plain, easel) if i % 2 == 0 else (easel, plain):
            (tp if side is plain else te).extend(timed(side, 1))
    app.stop()
    diff = float((out["plain"] - out["easel"]).abs().max()) * 255
    return median(tp), median(te), fixed, diff


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--models", default="tiny,mid")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    a = ap.parse_args()
    import torch

    if a.threads > 0:
        torch.set_num_threads(a.threads)

    print(
        f"CPU: {cpu_model()}, torch threads {torch.get_num_threads()}, load average (1/5/15 min) "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    for kind in a.models.split(","):
        p, e, fixed, diff = bench(kind, a.steps, a.repeats)
        per_step = (e - p - fixed) / a.steps
        print(
            f"{kind}, {a.steps} steps, {a.repeats} pairs: plain diffusers {p * 1000:.1f} ms, Easel runtime "
            f"{e * 1000:.1f} ms, ratio {e / p:.3f} (entering+leaving the runtime {fixed * 1000:.2f} ms; the rest "
            f"{per_step * 1000:+.2f} ms per step); largest pixel difference {diff:.2f}/255"
        )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
