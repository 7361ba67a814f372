"""CPU fast path (issue 10): each lever alone and Easel's default against plain diffusers fp32.

Every row runs in its own subprocess, so its peak RSS is its own (a process's peak never goes down).

1. UNet s/step, CFG batch 2, at each --sizes, on --unet (sd15: the shipped SD1.5 config with random weights;
   mid: benchmarks/_common.MID): plain fp32 · Easel default (what Automatic picks: bf16 autocast where the CPU has
   native bf16, FP32_MODULES kept fp32, Conv/Linear weights held in bf16 for the call, the conv weights laid out
   channels_last and prepacked for oneDNN — the one-off conversion is timed apart) · the default without the
   prepacking · the default with neither (NCHW weights, session 3's default) · bf16 autocast alone · channels_last
   (fp32, with bf16) · bf16-stored weights (the whole UNet .to(bf16)) · torch.compile
   (fp32 and bf16; the first call's compile time is printed) · 1 thread against the physical cores.
   --paired N: the headline ratio measured the steadiest way this shared VM allows. One process holds a plain
   diffusers UNet and Easel's (same weights) and alternates one step of each, N times per size; every pair is a
   ratio taken within seconds, so a slow spell of the machine hits both sides alike. Prints each pair and the median.
   --openvino DIR adds OpenVINO f32 and bf16 sides on the same weights (_openvino.py; EASEL_BENCH_OV_PRECISIONS=bf16
   for one side, less RAM); --easel-openvino f32,bf16 adds Easel's own `cpu_backend: openvino` (its f32 marks, its
   IR cache in --easel-openvino-cache); --threads 1 keeps OpenMP barriers out of a run on a busy machine.
2. End-to-end txt2img through the Application on the mid model (text encoder + VAE decode included), fp32 against
   the Easel default (VAE decode Automatic: bf16 where its guard passes) and the default with the fp32 decode it had
   before issue 21, Euler a, --e2e-steps at --e2e-size; with --easel-openvino (any value) also the default on
   `cpu_backend: openvino`.
3. Live preview decode per preview on the mid model's VAE: Full, Approx cheap, TAESD (random-weight
   AutoencoderTiny: the speed of the real one, not its pictures).

    python benchmarks/cpu_fast_path.py [--sizes 512,256] [--steps 3] [--rounds 1] [--unet sd15] [--e2e-size 256]
        [--e2e-steps 20] [--no-compile] [--only unet,e2e,preview]
    python benchmarks/cpu_fast_path.py --only unet --sizes 512 --paired 8   # the headline ratio (~6 min)
    python benchmarks/cpu_fast_path.py --only unet --sizes 512,256 --paired 6 --openvino /tmp/ov-pkgs   # + OpenVINO
    python benchmarks/cpu_fast_path.py --only unet --sizes 256 --paired 4 --threads 1 --easel-openvino bf16,f32 \
        --openvino auto   # + Easel's cpu_backend=openvino (EASEL_BENCH_OV_PRECISIONS=bf16: one raw OpenVINO side)
    python benchmarks/cpu_fast_path.py --sizes 64 --steps 1 --e2e-size 64 --e2e-steps 1 --unet mid   # smoke run
"""

from __future__ import annotations

import argparse
from contextlib import nullcontext
from types import SimpleNamespace
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

# importing _common also puts the repo on sys.path and sets the offline environment
from _common import median, temp_data_dir, write_model

UNET_VARIANTS = (
    "plain fp32",
    "Easel default",
    "bf16 autocast alone",
    "channels_last fp32",
    "channels_last + bf16",
    "Easel default (no prepack)",
    "Easel default (NCHW unpacked)",
    "bf16-stored weights",
    "torch.compile fp32",
    "torch.compile + bf16",
    "plain fp32, 1 thread",
    "Easel default, 1 thread",
)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_unet(kind: str):
    import torch
    from diffusers import UNet2DConditionModel

    if kind == "sd15":
        from webui.models.probe import load_template

        torch.manual_seed(0)
        return UNet2DConditionModel.from_config(load_template("sd15", "unet")).eval()
    from _common import mid_components

    return mid_components()[0]


def unet_child(variant: str, kind: str, size: int, steps: int) -> dict:
    """Time one variant: a warm-up call (oneDNN primitive creation; the compile for torch.compile rows), then
    `steps` calls at distinct timesteps."""
    import torch

    from webui.models.compile import set_unet_compile
    from webui.models.device import choose_policy, physical_cores
    from webui.models.precision import bf16_weights, choose_precision, install_unet_autocast

    torch.set_num_threads(1 if "1 thread" in variant else physical_cores())
    policy = choose_policy()
    unet = build_unet(kind)
    dtype = torch.float32
    if variant.startswith("plain"):
        pass
    else:
        switch = install_unet_autocast(unet)
        if variant.startswith("Easel default"):
            switch.enabled = choose_precision("Automatic", policy, unet) == "bf16"
        elif variant in ("channels_last + bf16", "torch.compile + bf16", "bf16 autocast alone"):
            switch.enabled = True
        if "channels_last" in variant:
            unet.to(memory_format=torch.channels_last)
        if variant == "bf16-stored weights":
            unet.to(torch.bfloat16)
            dtype = torch.bfloat16
        if variant.startswith("torch.compile"):
            set_unet_compile(unet, True)
    x = torch.randn(2, 4, size // 8, size // 8, dtype=dtype)
    ctx = torch.randn(2, 77, unet.config.cross_attention_dim, dtype=dtype)
    # what PromptConditioning.run wraps each pipeline call in (a no-op unless the switch is on)
    weights = (
        bf16_weights(
            SimpleNamespace(unet=unet),
            channels_last="NCHW" not in variant,
            prepack="unpacked" not in variant and "no prepack" not in variant,
        )
        if variant.startswith("Easel default")
        else nullcontext()
    )
    with torch.no_grad():
        t0 = time.perf_counter()
        weights.__enter__()
        convert = time.perf_counter() - t0
        t0 = time.perf_counter()
        unet(x, torch.tensor(999), encoder_hidden_states=ctx)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in range(steps):
            unet(x, torch.tensor(999 - i * 50), encoder_hidden_states=ctx)
        per_step = (time.perf_counter() - t0) / steps
        weights.__exit__(None, None, None)
    out = {"s_per_step": per_step, "first_call_s": first, "threads": torch.get_num_threads(), "convert_s": convert}
    from webui.models.compile import compile_state

    state = compile_state(unet)
    if state.enabled:
        out["compile"] = state.status + (f" ({state.error})" if state.error else "")
    return out


def easel_openvino_sides(unet, x, ctx, kind: str, precisions: list[str], threads: int, cache: str) -> tuple[dict, str]:
    """Easel's `cpu_backend: openvino` (webui/models/openvino_backend.py: the production conversion with its f32
    marks, IR cache and per-shape compile) on `unet` itself, one side per precision; the hook is off between calls,
    so the same module still serves the plain fp32 side."""
    import torch

    from webui.models import openvino_backend as ovb

    ov, why = ovb.import_openvino()
    if ov is None:
        return {}, why
    sides: dict = {}
    conversions = 0
    t0 = time.perf_counter()
    for precision in precisions:
        plan = ovb.OpenVinoPlan(
            key=ovb.ir_key(f"bench-{kind}-seed0", (), ov.__version__),
            cache_dir=cache,
            precision=precision,
            threads=threads,
        )
        with ovb.running(unet, plan) as hook:  # installs the hook and converts (or reads the cached IR) once
            conversions = hook.conversions

        def side(t: int, plan=plan, hook=hook):
            hook.plan = plan
            try:
                return unet(x, torch.tensor(t), encoder_hidden_states=ctx).sample
            finally:
                hook.plan = None

        sides[f"Easel cpu_backend=openvino {precision}"] = side
    note = f"Easel cpu_backend=openvino (OpenVINO {ov.__version__}): IR ready in {time.perf_counter() - t0:.0f} s"
    note += f" ({conversions} conversion(s) this run; cache {cache})"
    return sides, note


def paired_child(
    kind: str, size: int, pairs: int, openvino: str = "", threads: int = 0, easel_openvino: str = "", cache: str = ""
) -> dict:
    """Plain diffusers fp32 and Easel's default on two copies of one UNet, stepped alternately (see --paired); with
    --openvino, OpenVINO fp32 and bf16 inference precision on the same weights join the rotation (_openvino.py); with
    --easel-openvino, Easel's own `cpu_backend: openvino` at those precisions."""
    import copy

    import torch

    from webui.models.device import choose_policy, physical_cores
    from webui.models.precision import bf16_weights, choose_precision, install_unet_autocast

    torch.set_num_threads(threads or physical_cores())
    plain = build_unet(kind)
    x = torch.randn(2, 4, size // 8, size // 8)
    ctx = torch.randn(2, 77, plain.config.cross_attention_dim)
    sides: dict = {"plain": lambda t: plain(x, torch.tensor(t), encoder_hidden_states=ctx).sample}
    out: dict = {"threads": torch.get_num_threads()}
    if openvino:
        from _openvino import compile_unet, import_openvino

        ov, why = import_openvino(openvino)
        if ov is None:
            out["openvino"] = why
        else:
            precisions = os.environ.get("EASEL_BENCH_OV_PRECISIONS", "f32,bf16").split(",")  # bf16 alone: less RAM
            runs, seconds = compile_unet(ov, plain, x, ctx, precisions, torch.get_num_threads())
            sides.update(runs)
            out["openvino"] = f"OpenVINO {ov.__version__}: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())
    easel = copy.deepcopy(plain)
    switch = install_unet_autocast(easel)
    switch.enabled = choose_precision("Automatic", choose_policy(), easel) == "bf16"
    sides["easel"] = lambda t: easel(x, torch.tensor(t), encoder_hidden_states=ctx).sample
    if easel_openvino:  # after the deep copy: the hook stays on the plain UNet only
        more, note = easel_openvino_sides(
            plain, x, ctx, kind, easel_openvino.split(","), torch.get_num_threads(), cache
        )
        sides.update(more)
        out["easel_openvino"] = note
    times: dict[str, list[float]] = {k: [] for k in sides}
    names = list(sides)
    # The bf16 weights are converted once, as for a pipeline call (timed apart); the plain UNet never sees them.
    with torch.no_grad(), bf16_weights(SimpleNamespace(unet=easel)):
        ref = sides["plain"](500)
        # warm-up (oneDNN primitive creation) and each side's relative error against fp32 at one timestep
        out["rel_error"] = {k: float((f(500).float() - ref).norm() / ref.norm()) for k, f in sides.items()}
        for i in range(pairs):
            order = names[i % len(names) :] + names[: i % len(names)]  # rotate who goes first
            for name in order:
                t0 = time.perf_counter()
                sides[name](900 - i * 40)
                times[name].append(time.perf_counter() - t0)
    out.update(times=times, plain=times["plain"], easel=times["easel"], enabled=switch.enabled)
    return out


def e2e_child(variant: str, ckpt: str, size: int, steps: int, out: str | None = None) -> dict:
    """One txt2img through the Application (queue, plan, text encoder, UNet, VAE decode), after a 1-step warm-up."""
    import torch

    from webui.app import Application
    from webui.flags import parse_args
    from webui.generation.requests import Txt2ImgRequest

    data = temp_data_dir()
    app = Application(parse_args(["--data-dir", str(data), "--nowebui", "--ckpt", ckpt]), owns_process=True)
    app.catalog.demo_dir = None
    app.start(wait_for_model=True)
    overrides = {
        "cpu_precision": "fp32" if variant == "plain fp32" else ("bf16" if "bf16" in variant else "Automatic"),
        "samples_save": False,
        "cpu_vae_precision": "fp32" if "fp32" in variant else "Automatic",
        "cpu_backend": "openvino" if "openvino" in variant else "torch",
    }
    req = dict(
        prompt="a red circle on a blue background",
        seed=1,
        sampler_name="Euler a",
        width=size,
        height=size,
        override_settings=overrides,
    )
    app.jobs.wait(app.submit_txt2img(Txt2ImgRequest(steps=1, **req), from_api=True))
    t0 = time.perf_counter()
    r = app.jobs.wait(app.submit_txt2img(Txt2ImgRequest(steps=steps, **req), from_api=True))
    seconds = time.perf_counter() - t0
    if out:  # the parent compares every variant's image with the first's (PSNR)
        r.images[0].save(out)
    precision = ", VAE ".join(
        p.split(": ")[1] for p in r.infotexts[0].split(", ") if p.startswith(("Precision: ", "VAE precision: "))
    )
    if "CPU backend: " in r.infotexts[0]:
        precision += ", CPU backend " + r.infotexts[0].split("CPU backend: ")[1].split(",")[0]
    app.stop()
    return {"seconds": seconds, "precision": precision, "threads": torch.get_num_threads()}


def preview_child(size: int, repeats: int = 3) -> dict:
    """Seconds per preview of one (4, size/8, size/8) latent on the mid model's VAE."""
    import torch
    from _common import mid_components
    from diffusers import AutoencoderTiny

    from webui.generation import preview
    from webui.models.device import physical_cores

    torch.set_num_threads(physical_cores())
    vae = mid_components()[1]
    src = preview.PreviewSource()
    src.taesd = AutoencoderTiny().eval()
    src.tried.add("taesd")
    latent = torch.randn(4, size // 8, size // 8)
    out = {}
    for method in ("Full", "Approx cheap", "TAESD"):
        preview.make_preview(method, vae, latent, src)  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            preview.make_preview(method, vae, latent, src)
            times.append(time.perf_counter() - t0)
        out[method] = median(times)
    return out


def pick_variants(text: str) -> list[str]:
    """--variants is comma-separated, and some row names contain ", " ("plain fp32, 1 thread"): a piece that only
    makes a known name together with the next piece is joined to it. Unknown names are reported, not dropped."""
    pieces, out = [p.strip() for p in text.split(",") if p.strip()], []
    i = 0
    while i < len(pieces):
        if i + 1 < len(pieces) and f"{pieces[i]}, {pieces[i + 1]}" in UNET_VARIANTS:
            out.append(f"{pieces[i]}, {pieces[i + 1]}")
            i += 2
            continue
        if pieces[i] in UNET_VARIANTS:
            out.append(pieces[i])
        else:
            print(f"unknown variant {pieces[i]!r}; known: {', '.join(UNET_VARIANTS)}", flush=True)
        i += 1
    return out


def image_psnr(a: Path, b: Path) -> float:
    """PSNR (dB, 8-bit) of two saved images; inf when identical."""
    import numpy as np
    from PIL import Image

    x = np.asarray(Image.open(a).convert("RGB"), dtype=np.float64)
    y = np.asarray(Image.open(b).convert("RGB"), dtype=np.float64)
    mse = float(((x - y) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def run_child(*args: str) -> dict:
    """Run this script as a child and return its JSON result plus its peak RSS."""
    proc = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(lines[-1])


def child_main(a: argparse.Namespace) -> None:
    if a.mode == "unet":
        result = unet_child(a.variant, a.unet, a.size, a.steps)
    elif a.mode == "paired":
        result = paired_child(a.unet, a.size, a.steps, a.openvino, a.threads, a.easel_openvino, a.easel_openvino_cache)
    elif a.mode == "e2e":
        result = e2e_child(a.variant, a.ckpt, a.size, a.steps, a.out)
    else:
        result = preview_child(a.size)
    result["rss_mb"] = peak_rss_mb()
    print(json.dumps(result), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="512,256")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=1, help="interleaved repeats of every UNet row (medians)")
    ap.add_argument("--unet", default="sd15", choices=("sd15", "mid"))
    ap.add_argument("--e2e-size", type=int, default=256)
    ap.add_argument("--e2e-steps", type=int, default=20)
    ap.add_argument("--e2e-model", default="mid", help="mid, sd15 (SD 1.5-sized, random weights) or a checkpoint file")
    ap.add_argument("--e2e-variants", default="", help="comma-separated e2e rows (default: all)")
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--preview-size", type=int, default=512)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows (slow first calls)")
    ap.add_argument("--only", default="unet,e2e,preview")
    ap.add_argument(
        "--paired",
        type=int,
        default=0,
        help="instead of the UNet rows: N alternating plain/Easel step pairs in one process per size",
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=0,
        help="with --paired: torch and OpenVINO threads (0: the "
        "physical cores; 1 keeps OpenMP barriers out of a comparison on a machine busy with other work)",
    )
    ap.add_argument(
        "--openvino",
        default="",
        help="with --paired: add OpenVINO fp32/bf16 sides; 'auto' or a folder "
        "holding the openvino package (benchmarks/_openvino.py), skipped with a message when absent",
    )
    ap.add_argument(
        "--easel-openvino",
        default="",
        help="with --paired: add Easel's cpu_backend=openvino sides at these "
        "precisions (f32,bf16), through webui/models/openvino_backend.py",
    )
    ap.add_argument(
        "--easel-openvino-cache",
        default="/tmp/easel-bench-openvino",
        help="where those sides keep their IR (reused by a later run on the same --unet)",
    )
    ap.add_argument("--variants", default="", help="comma-separated UNet rows to run (default: all)")
    # child-process arguments
    ap.add_argument("--child", dest="mode", default=None, choices=("unet", "paired", "e2e", "preview"))
    ap.add_argument("--variant", default="")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--ckpt", default="")
    a = ap.parse_args()
    if a.mode:
        child_main(a)
        return

    from webui.models.device import choose_policy, physical_cores

    policy = choose_policy()
    print(f"policy: {policy.label} ({policy.note}); physical cores {physical_cores()}")
    only = set(a.only.split(","))
    if "unet" in only and a.paired:
        for size in (int(s) for s in a.sizes.split(",")):
            r = run_child(
                "paired",
                "--unet",
                a.unet,
                "--size",
                str(size),
                "--steps",
                str(a.paired),
                "--openvino",
                a.openvino,
                "--threads",
                str(a.threads),
                "--easel-openvino",
                a.easel_openvino,
                "--easel-openvino-cache",
                a.easel_openvino_cache,
            )
            if "error" in r:
                print(f"{a.unet} {size}² paired run failed: {r['error']}", flush=True)
                continue
            ratios = [p / e for p, e in zip(r["plain"], r["easel"])]
            print(
                f"{a.unet} {size}² paired, {a.paired} pairs, threads {r['threads']}, bf16 {r['enabled']}: "
                f"plain fp32 {median(r['plain']):.3f} s/step, Easel default {median(r['easel']):.3f} s/step, "
                f"×{median(ratios):.2f} (median of pairs; pairs {' '.join(f'{q:.2f}' for q in ratios)}; "
                f"lowest ×{min(ratios):.2f})  peak RSS {r['rss_mb']:.0f} MB (all sides)",
                flush=True,
            )
            for note in ("openvino", "easel_openvino"):
                if note in r:
                    print(f"  {r[note]}", flush=True)
            for name, times in r["times"].items():
                if name in ("plain", "easel"):
                    continue
                vs_plain = [p / t for p, t in zip(r["plain"], times)]
                vs_easel = [e / t for e, t in zip(r["easel"], times)]
                print(
                    f"  {name}: {median(times):.3f} s/step, ×{median(vs_plain):.2f} vs plain fp32 (pairs "
                    f"{min(vs_plain):.2f}–{max(vs_plain):.2f}), ×{median(vs_easel):.2f} vs Easel default (pairs "
                    f"{min(vs_easel):.2f}–{max(vs_easel):.2f})",
                    flush=True,
                )
            print(
                "  relative error against fp32 at t=500: "
                + ", ".join(f"{k} {v * 100:.2f}%" for k, v in r["rel_error"].items() if k != "plain"),
                flush=True,
            )
    elif "unet" in only:
        variants = [v for v in UNET_VARIANTS if not (a.no_compile and "compile" in v)]
        if a.variants:
            variants = pick_variants(a.variants)
        for size in (int(s) for s in a.sizes.split(",")):
            # Rounds interleave the variants, so a slow spell of a shared machine hits them alike; each row prints
            # its median, and the speed-up is the median of the per-round ratios against plain fp32.
            runs: dict[str, list[dict]] = {v: [] for v in variants}
            for _ in range(a.rounds):
                for v in variants:
                    r = run_child(
                        "unet", "--variant", v, "--unet", a.unet, "--size", str(size), "--steps", str(a.steps)
                    )
                    if "error" in r:
                        print(f"{a.unet} {size}² {v:26s} failed: {r['error']}", flush=True)
                    else:
                        runs[v].append(r)
            base_runs = runs.get(variants[0]) or []
            for v in variants:
                if not runs[v]:
                    continue
                r = min(runs[v], key=lambda x: abs(x["s_per_step"] - median([y["s_per_step"] for y in runs[v]])))
                ratios = [b["s_per_step"] / x["s_per_step"] for b, x in zip(base_runs, runs[v])]
                extra = f"  first call {r['first_call_s']:.1f} s" + (f"  {r['compile']}" if "compile" in r else "")
                if r.get("convert_s", 0) > 0.001:
                    extra += f"  weights → bf16 once per call {r['convert_s']:.2f} s"
                spread = "/".join(f"{x['s_per_step']:.2f}" for x in runs[v])
                print(
                    f"{a.unet} {size}² {v:30s} {r['s_per_step']:7.3f} s/step (runs {spread})  "
                    f"×{median(ratios) if ratios else float('nan'):4.2f}  threads {r['threads']}  "
                    f"peak RSS {r['rss_mb']:6.0f} MB{extra}",
                    flush=True,
                )
    if "e2e" in only:
        models = temp_data_dir() / "models" / "Stable-diffusion"
        if a.e2e_model == "mid":
            ckpt = write_model("mid", models)
        elif a.e2e_model == "sd15":
            from e2e_breakdown import write_sd15

            ckpt = write_sd15(models)
        else:
            ckpt = Path(a.e2e_model)  # a checkpoint file, e.g. models/Demo/easel-demo.safetensors (a trained VAE)
        label = ckpt.stem if a.e2e_model not in ("mid", "sd15") else a.e2e_model
        base, first_image = None, None
        e2e_variants = a.e2e_variants.split(",") if a.e2e_variants else []
        if not e2e_variants:
            e2e_variants = ["plain fp32", "Easel default", "Easel default, fp32 VAE"]
            if a.easel_openvino:  # the first (1-step) job of its process converts the UNet; the timed one reads the IR
                e2e_variants.append("Easel cpu_backend=openvino")
        for i, v in enumerate(e2e_variants):
            out = models.parent.parent / f"e2e-{i}.png"
            r = run_child(
                "e2e", "--variant", v, "--ckpt", str(ckpt), "--size", str(a.e2e_size), "--steps", str(a.e2e_steps),
                "--out", str(out),
            )  # fmt: skip
            if "error" in r:
                print(f"e2e {label} {a.e2e_size}² {v} failed: {r['error']}")
                continue
            base = base or r["seconds"]
            first_image = first_image or out
            print(
                f"e2e txt2img {label} {a.e2e_size}² {a.e2e_steps} steps {v:26s} {r['seconds']:7.2f} s/image  "
                f"×{base / r['seconds']:4.2f}  PSNR vs the first row {image_psnr(first_image, out):5.1f} dB  "
                f"Precision: {r['precision']}  peak RSS {r['rss_mb']:6.0f} MB",
                flush=True,
            )
    if "preview" in only:
        r = run_child("preview", "--size", str(a.preview_size))
        if "error" in r:
            print(f"preview failed: {r['error']}")
        else:
            print(
                f"live preview decode at {a.preview_size}², mid VAE: "
                + ", ".join(f"{m} {r[m] * 1000:.1f} ms" for m in ("Full", "Approx cheap", "TAESD"))
            )


if __name__ == "__main__":
    main()
