"""Checkpoint merger: peak RSS and throughput on full-size random SD 1.5 (or SDXL) checkpoints (issue #20's benchmark).

Writes two (three for add difference) random fp32 checkpoints with SD 1.5's exact tensor names and shapes (1.07 G
parameters, 4.3 GB each; SDXL with --family sdxl: 3.47 G, 13.9 GB each), streamed to disk so writing them needs no
RAM either), then merges them in a fresh process through the merger's own streaming path and reports the process's
peak RSS above its baseline and the throughput (GB of input read per second).

    python benchmarks/merge_memory.py [--family sd15|sdxl] [--method weighted_sum|add_difference] [--half] [--keep DIR]
    python benchmarks/merge_memory.py --measure METHOD OUT A B [C]      (the child: prints one JSON line)

Needs ~13 GB free disk for SD 1.5 (~17 GB for add difference), ~42 GB for SDXL, in the temp folder.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _status(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def rss_bytes() -> int:
    return _status("VmRSS")


def peak_rss_bytes() -> int:
    """This process's own high-water mark (VmHWM). Not getrusage's ru_maxrss: Linux carries that over from the
    parent across fork and exec, so a child of a big process (pytest with models loaded) reports the parent's."""
    return _status("VmHWM")


def full_size_shapes(family: str = "sd15") -> dict[str, tuple[int, ...]]:
    """A full-size checkpoint's single-file tensor names and shapes, from the shipped configs on the meta device
    (no weights): SD 1.5 (1.07 G parameters) or SDXL base (3.47 G)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from webui.models.ldm_keys import to_ldm_state_dict
    from webui.models.probe import load_template

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(load_template(family, "unet"))
        vae = AutoencoderKL.from_config(load_template(family, "vae"))
        te = CLIPTextModel(CLIPTextConfig.from_dict(load_template(family, "text_encoder")))
        te2 = (
            CLIPTextModelWithProjection(CLIPTextConfig.from_dict(load_template(family, "text_encoder_2")))
            if family == "sdxl"
            else None
        )
    sd = to_ldm_state_dict(unet, vae, te, text_encoder_2=te2, family="sdxl" if te2 is not None else "sd1")
    return {k: tuple(v.shape) for k, v in sd.items()}


def write_random(path: Path, shapes: dict[str, tuple[int, ...]], seed: int, dtype: str = "fp32") -> Path:
    """A random checkpoint with these tensors, written block by block through the merger's stream writer."""
    import torch

    torch_dtype = {"fp32": torch.float32, "fp16": torch.float16}[dtype]

    from webui.merge.run import _blocks
    from webui.merge.stream_writer import TensorSpec, stream_safetensors

    gen = torch.Generator().manual_seed(seed)
    specs = [TensorSpec(k, torch_dtype, s) for k, s in shapes.items()]
    with stream_safetensors(path, specs, {"format": "pt"}) as w:
        for spec in w.specs:
            for start, stop in _blocks(spec.shape):
                shape = (stop - start, *spec.shape[1:]) if spec.shape else ()
                w.write((torch.randn(shape, generator=gen) * 0.02).to(torch_dtype))
    return path


def measure(method: str, out: Path, inputs: list[Path], half: bool = False) -> dict:
    """The child: merge `inputs` into `out` with the merger's streaming path; baseline/peak RSS and time."""
    import torch

    torch.set_num_threads(int(os.environ.get("EASEL_MERGE_THREADS", "2")))
    from webui.merge.plan import make_plan
    from webui.merge.run import write_all
    from webui.merge.sources import opened
    from webui.merge.stream_writer import stream_safetensors

    with opened(*inputs) as sources:
        a, b, c = (sources + [None, None])[:3]
        plan = make_plan(method, a, b, c, save_as_half=half)
        baseline = rss_bytes()
        t0 = time.perf_counter()
        with stream_safetensors(out, [s.spec for s in plan.steps], {"format": "pt"}) as w:
            write_all(w, plan, method, 0.5, a, b, c, None, lambda n: None, lambda: None)
        seconds = time.perf_counter() - t0
    read = sum(p.stat().st_size for p in inputs)
    return {
        "baseline_rss": baseline,
        "peak_rss": peak_rss_bytes(),
        "seconds": seconds,
        "input_bytes": read,
        "output_bytes": out.stat().st_size,
        "largest_tensor_bytes": max(s.spec.nbytes for s in plan.steps),
        "tensors": len(plan.steps),
    }


def run_child(method: str, out: Path, inputs: list[Path], half: bool = False) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--measure", method, str(out), *map(str, inputs)]
    if half:
        cmd.append("--half")
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=str(REPO))
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--measure", nargs="+", metavar="ARG", help=argparse.SUPPRESS)
    ap.add_argument("--method", default="weighted_sum", choices=["weighted_sum", "add_difference"])
    ap.add_argument("--half", action="store_true", help="save as float16")
    ap.add_argument("--family", default="sd15", choices=["sd15", "sdxl"], help="full-size layout to write")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "fp16"], help="of the random inputs")
    ap.add_argument("--keep", type=Path, help="folder for the random checkpoints (kept, reused when present)")
    args = ap.parse_args()
    if args.measure:
        method, out, *inputs = args.measure
        print(json.dumps(measure(method, Path(out), [Path(p) for p in inputs], args.half)))
        return
    folder = args.keep or Path(tempfile.mkdtemp(prefix="easel-merge-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    shapes = full_size_shapes(args.family)
    params = sum(math.prod(s) for s in shapes.values())
    inputs = []
    for i in range(3 if args.method == "add_difference" else 2):
        p = folder / f"random-{args.family}-{args.dtype}-{i}.safetensors"
        if not p.exists():
            t0 = time.perf_counter()
            write_random(p, shapes, seed=i, dtype=args.dtype)
            print(f"wrote {p.name}: {p.stat().st_size / 1e9:.2f} GB in {time.perf_counter() - t0:.0f} s", flush=True)
        inputs.append(p)
    out = folder / "merged.safetensors"
    out.unlink(missing_ok=True)
    r = run_child(args.method, out, inputs, args.half)
    out.unlink(missing_ok=True)
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")),
        platform.processor(),
    )
    mib = 2**20
    print(f"CPU: {cpu}; {os.cpu_count()} cores")
    print(
        f"{args.family} random {args.dtype}: {params / 1e9:.3f} G parameters, {len(shapes)} tensors, "
        f"{inputs[0].stat().st_size / 1e9:.2f} GB per file; {args.method}{' → fp16' if args.half else ''}"
    )
    print(
        f"merge: {r['seconds']:.1f} s, {r['input_bytes'] / 1e9 / r['seconds']:.2f} GB/s read, "
        f"{r['output_bytes'] / 1e9 / r['seconds']:.2f} GB/s written"
    )
    print(
        f"RSS: baseline {r['baseline_rss'] / mib:.0f} MiB, peak {r['peak_rss'] / mib:.0f} MiB, "
        f"above baseline {(r['peak_rss'] - r['baseline_rss']) / mib:.0f} MiB "
        f"(largest tensor {r['largest_tensor_bytes'] / mib:.0f} MiB, inputs {r['input_bytes'] / mib:.0f} MiB)"
    )
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
