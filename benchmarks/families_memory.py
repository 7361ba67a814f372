"""Peak RSS of a mid-size FLUX-shaped model (#18 Benchmark): the same transformer stored as a bf16 safetensors file
(BFL layout), GGUF Q8_0 and GGUF Q4_0 (city96 layout, written with the `gguf` package), each loaded by Easel and run
for one txt2img in its own process, so each peak is that case's alone.

The transformer is FLUX.1's block structure at reduced width and depth (FLUX_MID: 8 heads × 128 = 1024 wide, 4
double + 8 single blocks, ~0.26B parameters; FLUX.1 is 3072 wide with 19 + 38 blocks, 12B): its text widths are the
tiny test encoders' (32), so the CLIP-L / T5 / VAE parts are the tests' tiny files and the transformer is what the
figures measure. `--mid-ratio` also times Easel's txt2img over plain diffusers' FluxPipeline on the same mid-size
weights (fp32 file, interleaved runs).

    python benchmarks/families_memory.py [--steps 4] [--size 256] [--mid-ratio --repeats 3]
    python benchmarks/families_memory.py --vram-estimate   # FLUX.1 dev Q4_0: weights on a GPU per offload mode
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from _common import median, temp_data_dir, timed

FLUX_MID = dict(
    patch_size=1,
    in_channels=64,
    num_layers=4,
    num_single_layers=8,
    attention_head_dim=128,
    num_attention_heads=8,
    joint_attention_dim=32,
    pooled_projection_dim=32,
    axes_dims_rope=(16, 56, 56),
)
EASEL_META = {"transformer": {}, "native_size": 256}
CASES = {"bf16": "flux1-dev-mid-bf16.safetensors", "Q8_0": "flux1-dev-mid-Q8_0.gguf", "Q4_0": "flux1-dev-mid-Q4_0.gguf"}
FP32 = "flux1-dev-mid-fp32.safetensors"
PROMPT = "a red circle on a blue background"


def mid_transformer():
    import torch
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(0)
    return FluxTransformer2DModel(guidance_embeds=True, **FLUX_MID).eval()


def write_models(data: Path) -> None:
    import torch

    from tests.factories_families import _save, write_flux_split
    from tests.factories_gguf import write_gguf
    from webui.models.flux_keys import diffusers_to_bfl

    models = data / "models"
    files = write_flux_split(models, seed=0, dev=True)  # clip_l, t5xxl, ae (the tiny transformer file goes)
    files["transformer"].unlink()
    state = diffusers_to_bfl(mid_transformer().state_dict())
    meta = {"easel.config": json.dumps(EASEL_META)}
    ckpt = models / "Stable-diffusion"
    _save(ckpt / CASES["bf16"], {k: v.to(torch.bfloat16) for k, v in state.items()}, meta)
    _save(ckpt / FP32, state, meta)
    for q in ("Q8_0", "Q4_0"):
        write_gguf(ckpt / CASES[q], state, q, arch="flux", meta=EASEL_META)


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024


def rss_mb() -> float:
    return _status_mb("VmRSS")


def peak_mb() -> float:
    """This process's peak RSS: VmHWM (getrusage's ru_maxrss would carry the parent's peak across exec on Linux)."""
    return _status_mb("VmHWM")


def child(data: Path, case: str, steps: int, size: int) -> None:
    """One case in this process: start Easel on the file (the initial load), one txt2img; JSON on stdout."""
    from webui.app import Application
    from webui.flags import parse_args
    from webui.generation.requests import Txt2ImgRequest

    before = peak_mb()  # torch, diffusers and Easel imported, no model
    path = data / "models" / "Stable-diffusion" / CASES[case]
    app = Application(parse_args(["--data-dir", str(data), "--nowebui", "--ckpt", str(path)]))
    app.catalog.demo_dir = None
    t0 = time.perf_counter()
    app.start(wait_for_model=True)
    load = time.perf_counter() - t0
    after_load, peak_load = rss_mb(), peak_mb()
    report = next(m for m in app.models.loaded_report() if m["active"])
    app.options.set({"sd_model_checkpoint": app.models.active.info.title, "t5_max_length": 256})
    req = Txt2ImgRequest(
        prompt=PROMPT, steps=steps, seed=1, sampler_name="Euler", width=size, height=size, cfg_scale=1.0
    )
    t0 = time.perf_counter()
    app.jobs.wait(app.submit_txt2img(req, from_api=True))  # raises the job's error
    gen = time.perf_counter() - t0
    app.stop()
    print(
        json.dumps(
            {
                "case": case,
                "file_mb": path.stat().st_size / 2**20,
                "model_mb": report["bytes_ram"] / 2**20,
                "dtypes": report["dtypes"],
                "quantization": report["quantization"],
                "baseline_mb": before,
                "after_load_mb": after_load,
                "peak_load_mb": peak_load,
                "peak_mb": peak_mb(),
                "load_s": load,
                "gen_s": gen,
            }
        )
    )


def mid_ratio(data: Path, steps: int, size: int, repeats: int) -> dict[str, float]:
    """Easel (fp32 file → its pipeline, through the queue) over plain FluxPipeline with the same weights, in the
    dtype Easel's device policy computes SD 3/FLUX in (DevicePolicy.flow_dtype)."""
    import torch

    from tests.factories_families import tiny_flux_pipeline
    from webui.app import Application
    from webui.flags import parse_args
    from webui.generation.requests import Txt2ImgRequest

    path = data / "models" / "Stable-diffusion" / FP32
    app = Application(parse_args(["--data-dir", str(data), "--nowebui", "--ckpt", str(path)]))
    app.catalog.demo_dir = None
    app.start(wait_for_model=True)
    app.options.set({"sd_model_checkpoint": app.models.active.info.title, "t5_max_length": 256})
    req = Txt2ImgRequest(
        prompt=PROMPT, steps=steps, seed=1, sampler_name="Euler", width=size, height=size, cfg_scale=1.0,
        distilled_cfg_scale=3.5,
    )  # fmt: skip
    pipe = tiny_flux_pipeline(0, dev=True)  # the same parts as the files (write_flux_split, seed 0)
    pipe.transformer = mid_transformer()
    pipe.to(dtype=app.models.policy.flow_dtype)  # what Easel computes in (bf16 on a bf16 CPU), for a like-for-like
    pipe.set_progress_bar_config(disable=True)

    def easel():
        app.jobs.wait(app.submit_txt2img(req, from_api=True))

    def plain():
        pipe(
            prompt=PROMPT,
            num_inference_steps=steps,
            height=size,
            width=size,
            guidance_scale=3.5,
            max_sequence_length=256,
            generator=torch.Generator().manual_seed(1),
        )

    easel(), plain()  # warm-up
    te, td = [], []
    for _ in range(repeats):  # interleaved: drift in the shared machine's load hits both sides alike
        te += timed(easel, 1)
        td += timed(plain, 1)
    app.stop()
    return {"easel": median(te), "diffusers": median(td)}


def vram_estimate() -> None:
    """Weights on the device at most per offload mode for FLUX.1 dev as users run it (GGUF Q4_0 transformer, CLIP-L
    and T5-XXL in bf16, the VAE in bf16), computed by offload.weights_on_device on meta-device models (no RAM): the
    configs Easel ships, each quantizable Linear's weight replaced by its packed Q4_0 bytes (18 per 32 values).
    Computed, not measured: there is no GPU here; activations are not counted."""
    import torch
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from webui.models.memory_report import module_bytes
    from webui.models.offload import OffloadPlan, weights_on_device
    from webui.models.probe import load_template

    def cfg(part: str) -> dict:
        return {k: v for k, v in load_template("flux-dev", part).items() if not k.startswith("_")}

    with torch.device("meta"):
        parts = {
            "transformer": FluxTransformer2DModel(**cfg("transformer")).to(torch.bfloat16),
            "text_encoder": CLIPTextModel(CLIPTextConfig(**cfg("text_encoder"))).to(torch.bfloat16),
            "text_encoder_2": T5EncoderModel(T5Config(**cfg("text_encoder_2"))).to(torch.bfloat16),
            "vae": AutoencoderKL(**cfg("vae")).to(torch.bfloat16),
        }
        for m in parts["transformer"].modules():
            if isinstance(m, torch.nn.Linear) and m.in_features % 32 == 0:
                packed = torch.empty(m.out_features, m.in_features // 32 * 18, dtype=torch.uint8)
                m.weight = torch.nn.Parameter(packed, requires_grad=False)
    pipe = argparse.Namespace(components=parts)
    print("FLUX.1 dev, GGUF Q4_0 transformer + CLIP-L / T5-XXL / VAE in bf16 (computed from the shipped configs):")
    print(", ".join(f"{n} {module_bytes(m) / 2**20:.0f} MB" for n, m in parts.items()))
    print("| mode | weights on the device at most |\n|---|---|")
    for flag, plan in [
        ("none", OffloadPlan()),
        ("--medvram (model CPU offload)", OffloadPlan("model")),
        ("--lowvram on CUDA (group, 1 block, stream prefetch; VAE kept)", OffloadPlan("group", 1, True)),
        ("group, 1 block, no stream", OffloadPlan("group", 1, False)),
    ]:
        print(f"| {flag} | {weights_on_device(pipe, plan) / 2**20:.0f} MB |")


def main() -> None:
    from families import cpu_name

    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--cases", default="bf16,Q8_0,Q4_0")
    ap.add_argument("--mid-ratio", action="store_true")
    ap.add_argument("--vram-estimate", action="store_true", help="only the computed FLUX.1 dev offload table")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data", type=Path, default=None, help="(internal) the written models")
    ap.add_argument("--child", default=None, help="(internal) run one case in this process")
    a = ap.parse_args()
    if a.child:
        return child(a.data, a.child, a.steps, a.size)
    if a.vram_estimate:
        return vram_estimate()
    data = temp_data_dir()
    t0 = time.perf_counter()
    write_models(data)
    print(f"CPU: {cpu_name()}; models written in {time.perf_counter() - t0:.0f} s to {data}")
    print(f"one txt2img, {a.steps} steps at {a.size}x{a.size}, T5 length 256; each case in its own process")
    print("| case | file MB | in RAM MB (dtypes) | RSS before load MB | peak RSS MB | load s | txt2img s |")
    print("|---|---|---|---|---|---|---|")
    for case in a.cases.split(","):
        cmd = [sys.executable, __file__, "--data", str(data), "--child", case, "--steps", str(a.steps)]
        out = subprocess.run(cmd + ["--size", str(a.size)], capture_output=True, text=True)
        if out.returncode:
            print(f"| {case} | failed: {out.stderr[-800:]} |")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        dtype = r["dtypes"]["transformer"] + (f" {r['quantization']}" if r["quantization"] else "")
        print(
            f"| {case} | {r['file_mb']:.0f} | {r['model_mb']:.0f} (transformer {dtype}) | {r['baseline_mb']:.0f} | "
            f"{r['peak_mb']:.0f} | {r['load_s']:.1f} | {r['gen_s']:.1f} |"
        )
    if a.mid_ratio:
        r = mid_ratio(data, a.steps, a.size, a.repeats)
        print(
            f"mid-size FLUX, fp32: easel {r['easel']:.2f} s, diffusers {r['diffusers']:.2f} s, "
            f"ratio {r['easel'] / r['diffusers']:.3f} (target <= 1.03; median of {a.repeats}, interleaved)"
        )


if __name__ == "__main__":
    main()
