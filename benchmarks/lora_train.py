"""Easel's LoRA training step against a plain diffusers + peft loop: same model, batch, rank, cached latents.

Timing: both loops live in one process on their own copy of the model, and their steps alternate, so a busy
neighbour slows both alike; the median step of each is compared. Peak memory: each loop alone in a child process
(max RSS on the CPU, max allocated on CUDA). Target: step time ratio <= 1.05.

    python benchmarks/lora_train.py [--models tiny,mid,/path/to/checkpoint.safetensors] [--steps 30] [--batch 2]
                                    [--rank 8] [--res 64] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from _common import temp_data_dir, write_model


def _setup(kind: str, res: int):
    from tests.training.conftest import make_dataset
    from webui.models.loader import build_from_single_file
    from webui.training.dataset import encode_latents, load_dataset
    from webui.training.run import bucket_step

    data = temp_data_dir()
    ckpt = Path(kind) if kind.endswith((".safetensors", ".ckpt")) else write_model(kind, data / "ckpt")
    lc = build_from_single_file(ckpt, data / "cfg")
    pipe = lc.pipeline
    ds = load_dataset(make_dataset(data / "ds", n=8, size=(res, res)))
    cache = encode_latents(pipe.vae, ds, res, bucket_step(pipe))
    return ckpt, data, pipe, lc.scheduler_config, cache


def easel_stepper(pipe, sched_cfg, cache, batch, rank):
    from webui.training.trainer import LoraTrainer, TrainConfig

    trainer = LoraTrainer(
        pipe,
        TrainConfig(steps=10**9, batch_size=batch, rank=rank, alpha=rank, learning_rate=1e-4, seed=0),
        cache,
        scheduler_config=sched_cfg,
    )
    trainer.train_mode()
    batches = trainer.batches()
    return lambda i: trainer.train_step(batches)


def plain_stepper(pipe, sched_cfg, cache, batch, rank):
    """The loop of diffusers' examples/text_to_image/train_text_to_image_lora.py, minus accelerate and the VAE."""
    import torch.nn.functional as F
    from diffusers import DDPMScheduler
    from peft import LoraConfig

    unet, te, tok = pipe.unet, pipe.text_encoder, pipe.tokenizer
    unet.requires_grad_(False)
    te.requires_grad_(False)
    unet.add_adapter(
        LoraConfig(
            r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=["to_k", "to_q", "to_v", "to_out.0"]
        )
    )
    params = [p for p in unet.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-2)
    sched = DDPMScheduler.from_config(sched_cfg)
    samples = [s for v in cache.buckets.values() for s in v]
    unet.train()

    def step(i):
        chosen = [samples[(i * batch + j) % len(samples)] for j in range(batch)]
        latents = torch.stack([s.latent for s in chosen])
        noise = torch.randn_like(latents)
        t = torch.randint(0, sched.config.num_train_timesteps, (batch,))
        noisy = sched.add_noise(latents, noise, t)
        ids = tok(
            [s.caption for s in chosen],
            padding="max_length",
            max_length=tok.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        with torch.no_grad():
            enc = te(ids)[0]
        loss = F.mse_loss(unet(noisy, t, enc).sample.float(), noise.float())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad()
        return float(loss.detach())

    return step


def timing(args) -> dict[str, float]:
    from webui.models.loader import build_from_single_file

    ckpt, data, pipe, sched_cfg, cache = _setup(args.kind, args.res)
    other = build_from_single_file(ckpt, data / "cfg").pipeline
    steppers = {
        "easel": easel_stepper(pipe, sched_cfg, cache, args.batch, args.rank),
        "plain": plain_stepper(other, sched_cfg, cache, args.batch, args.rank),
    }
    times: dict[str, list[float]] = {k: [] for k in steppers}
    for i in range(3 + args.steps):
        for name in ("easel", "plain") if i % 2 else ("plain", "easel"):
            t0 = time.perf_counter()
            steppers[name](i)
            if i >= 3:  # after a warm-up
                times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def memory(args) -> dict[str, float]:
    _, _, pipe, sched_cfg, cache = _setup(args.kind, args.res)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    make = easel_stepper if args.mode == "easel" else plain_stepper
    step = make(pipe, sched_cfg, cache, args.batch, args.rank)
    for i in range(5):
        step(i)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cuda = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    return {"peak_mb": peak / 1024, "train_mb": (peak - base) / 1024, "cuda_mb": cuda}


def main() -> None:
    from webui.app import _quiet_libraries

    _quiet_libraries()
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="tiny")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--res", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--mode", choices=["easel", "plain"])  # internal: one memory measurement
    ap.add_argument("--kind", default="tiny")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.mode:
        print(json.dumps(memory(args)))
        return
    for kind in args.models.split(","):
        args.kind = kind
        t = timing(args)
        mem = {}
        for mode in ("easel", "plain"):
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--mode",
                mode,
                "--kind",
                kind,
                "--batch",
                str(args.batch),
                "--rank",
                str(args.rank),
                "--res",
                str(args.res),
                "--threads",
                str(args.threads),
            ]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            mem[mode] = json.loads(out.strip().splitlines()[-1])
        e, p = mem["easel"], mem["plain"]
        cuda = f"; CUDA peak {e['cuda_mb']:.0f} vs {p['cuda_mb']:.0f} MB" if e["cuda_mb"] is not None else ""
        print(
            f"{kind} (batch {args.batch}, rank {args.rank}, {args.res}px): easel {t['easel'] * 1000:.1f} ms/step, "
            f"plain diffusers+peft {t['plain'] * 1000:.1f} ms/step, ratio {t['easel'] / t['plain']:.3f} "
            f"(target <= 1.05); peak RSS easel {e['peak_mb']:.0f} MB vs plain {p['peak_mb']:.0f} MB "
            f"(training added {e['train_mb']:.0f} vs {p['train_mb']:.0f} MB){cuda}"
        )


if __name__ == "__main__":
    main()
