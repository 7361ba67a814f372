"""Train Easel's bundled demo model from scratch on the procedural dataset, and export it in A1111 layout.

    HF_HUB_OFFLINE=1 nohup .venv/bin/python tools/demo_model/train.py > tools/demo_model/work/train.log 2>&1 &

Phases (each resumable; state is saved every few minutes under tools/demo_model/work/, re-running continues):
  1. vae   - AutoencoderKL f=4 (64×64×3 → 16×16×4), trained as a deterministic autoencoder (posterior mean,
             L1 + L2 + 1e-4·z²). Afterwards its log-variance head is pinned to -30, so `latent_dist.sample()`
             (img2img, inpainting) equals the mean.
  2. pool  - a fixed pool of encoded latents + tokenised captions; the latent std sets `scaling_factor`.
  3. unet  - UNet2DConditionModel + CLIPTextModel jointly: epsilon prediction, SD's scaled_linear betas, min-SNR-5,
             10% empty captions, AdamW, warmup, cosine tail, EMA, bf16 autocast.
  4. export - EMA weights → models/Demo/easel-demo.safetensors (fp16), reloaded through the app's loader and scored.

Everything is seeded. `--smoke` runs a few steps of every phase into work/smoke/ to prove the pipeline end to end.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tools.demo_model.architecture import (  # noqa: E402
    NATIVE,
    build_text_encoder,
    build_unet,
    build_vae,
    easel_config,
    scheduler_config,
)
from tools.demo_model.dataset import make_batch  # noqa: E402
from tools.demo_model.train_utils import (  # noqa: E402
    ThreadTuner,
    atomic_torch_save,
    ema_update,
    log,
    n_params,
    to_tensor,
)

HERE = Path(__file__).resolve().parent
WORK = HERE / "work"
OUT = REPO / "models" / "Demo" / "easel-demo.safetensors"


class Trainer:
    def __init__(self, args):
        self.args = args
        self.work = Path(args.work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.state_path = self.work / "state.pt"
        self.pool_path = self.work / "pool.pt"
        self.vae = build_vae()
        self.unet = build_unet()
        self.te = build_text_encoder()
        self.phase = "vae"
        self.step = 0
        self.elapsed = {"vae": 0.0, "pool": 0.0, "unet": 0.0}
        self.metrics: list[dict] = []
        self.vae_opt = torch.optim.AdamW(self.vae.parameters(), lr=args.vae_lr, weight_decay=0.0)
        self.gen = torch.Generator().manual_seed(args.seed)
        self.opt = None
        self.ema_unet = self.ema_te = None
        self.scaling = None
        self.last_save = time.time()
        self._t_mark = time.time()
        self.tuner = ThreadTuner(fixed=args.threads or None)
        torch.manual_seed(args.seed)

    # ---- state -----------------------------------------------------------------------------------------------
    def _tick(self) -> None:
        now = time.time()
        self.elapsed[self.phase] = self.elapsed.get(self.phase, 0.0) + now - self._t_mark
        self._t_mark = now

    def save(self) -> None:
        self._tick()
        state = {
            "phase": self.phase,
            "step": self.step,
            "elapsed": self.elapsed,
            "metrics": self.metrics,
            "scaling": self.scaling,
            "vae": self.vae.state_dict(),
            "vae_opt": self.vae_opt.state_dict(),
            "unet": self.unet.state_dict(),
            "te": self.te.state_dict(),
            "gen": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "args": vars(self.args),
        }
        if self.opt is not None:
            state.update(
                opt=self.opt.state_dict(), ema_unet=self.ema_unet.state_dict(), ema_te=self.ema_te.state_dict()
            )
        atomic_torch_save(state, self.state_path)
        self.last_save = time.time()
        (self.work / "progress.json").write_text(
            json.dumps(
                {
                    "phase": self.phase,
                    "step": self.step,
                    "elapsed_min": {k: round(v / 60, 1) for k, v in self.elapsed.items()},
                    "metrics": self.metrics[-3:],
                },
                indent=1,
            )
        )

    def maybe_save(self) -> None:
        if STOP["requested"]:
            self.save()
            log(f"stopped on request at {self.phase} step {self.step}; state saved, re-run to continue")
            sys.exit(0)
        if time.time() - self.last_save > self.args.save_every:
            self.save()
            log(f"saved state ({self.phase} step {self.step})")

    def load(self) -> bool:
        if not self.state_path.exists():
            return False
        s = torch.load(self.state_path, map_location="cpu", weights_only=False)
        self.phase, self.step, self.elapsed, self.metrics = s["phase"], s["step"], s["elapsed"], s["metrics"]
        self.scaling = s["scaling"]
        self.vae.load_state_dict(s["vae"])
        self.vae_opt.load_state_dict(s["vae_opt"])
        self.gen.set_state(s["gen"])
        torch.set_rng_state(s["torch_rng"])
        if self.args.restart_unet and self.phase in ("unet", "export", "done"):
            # new UNet/text-encoder run on the same VAE and latent pool (e.g. after changing the architecture)
            log(
                f"--restart-unet: discarding the UNet phase at step {self.step} "
                f"({self.elapsed.get('unet', 0) / 60:.1f} min)"
            )
            self.metrics.append(
                {
                    "phase": "unet-restart",
                    "discarded_step": self.step,
                    "discarded_minutes": round(self.elapsed.get("unet", 0) / 60, 1),
                }
            )
            self.phase, self.step, self.elapsed["unet"] = "unet", 0, 0.0
            self.elapsed.pop("export", None)
            torch.manual_seed(self.args.seed + 17)
            self.unet, self.te = build_unet(), build_text_encoder()
            self.gen.manual_seed(self.args.seed + 17)
            log(f"params: unet {n_params(self.unet) / 1e6:.2f}M, text encoder {n_params(self.te) / 1e6:.2f}M")
            return True
        self.unet.load_state_dict(s["unet"])
        self.te.load_state_dict(s["te"])
        if "opt" in s:
            self._init_unet_training()
            self.opt.load_state_dict(s["opt"])
            self.ema_unet.load_state_dict(s["ema_unet"])
            self.ema_te.load_state_dict(s["ema_te"])
        log(
            f"resumed: phase {self.phase}, step {self.step}, elapsed "
            f"{ {k: round(v / 60, 1) for k, v in self.elapsed.items()} } min"
        )
        return True

    # ---- phase 1: VAE ------------------------------------------------------------------------------------------
    def vae_lr(self, step: int) -> float:
        a = self.args
        if step < 50:
            return a.vae_lr * (step + 1) / 50
        frac = step / max(1, a.vae_steps)
        return a.vae_lr if frac < 0.5 else a.vae_lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (frac - 0.5) / 0.5)))

    def encode_mean(self, x: torch.Tensor) -> torch.Tensor:
        return self.vae.encode(x).latent_dist.mean

    def train_vae(self) -> None:
        a = self.args
        self.vae.train()
        self.vae.to(memory_format=torch.channels_last)
        t0, losses = time.time(), []
        while self.step < a.vae_steps:
            self.tuner.before(self.step)
            imgs, _ = make_batch(a.seed + 1, self.step * a.vae_batch, a.vae_batch, size_words=False)
            x = to_tensor(imgs)
            if a.vae_crop and self.step % 4 != 3:
                # 3 steps in 4 train on random 32×32 crops (4× cheaper; the VAE is convolutional), 1 in 4 on
                # whole images so the normalisation statistics and the mid-block attention see the native size
                cg = torch.Generator().manual_seed(a.seed * 7_919 + self.step)
                cy, cx = (int(v) for v in torch.randint(0, 64 - a.vae_crop + 1, (2,), generator=cg))
                x = x[:, :, cy : cy + a.vae_crop, cx : cx + a.vae_crop]
            x = x.contiguous(memory_format=torch.channels_last)
            for g in self.vae_opt.param_groups:
                g["lr"] = self.vae_lr(self.step)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
                z = self.encode_mean(x)
                rec = self.vae.decode(z).sample
            z, rec = z.float(), rec.float()
            loss = F.l1_loss(rec, x) + F.mse_loss(rec, x) + 1e-4 * z.pow(2).mean()
            self.vae_opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.vae.parameters(), 1.0)
            self.vae_opt.step()
            self.tuner.after()
            self.step += 1
            losses.append(loss.item())
            if self.step % 25 == 0 or self.step == a.vae_steps:
                mse = F.mse_loss(rec.detach().clamp(-1, 1), x).item()
                psnr = 10 * math.log10(4.0 / max(mse, 1e-10))
                log(
                    f"vae step {self.step}/{a.vae_steps} loss {np.mean(losses):.4f} psnr(train) {psnr:.1f}dB "
                    f"lr {self.vae_lr(self.step):.1e} {(time.time() - t0) / len(losses):.2f}s/step"
                )
                losses, t0 = [], time.time()
            self.maybe_save()
        self.finish_vae()

    @torch.no_grad()
    def finish_vae(self) -> None:
        from tools.demo_model.analyse import score

        self.vae.eval()
        self.vae.to(memory_format=torch.contiguous_format)
        # pin the log-variance half of quant_conv: sampling the posterior then returns (almost exactly) the mean
        qc = self.vae.quant_conv
        qc.weight[4:].zero_()
        qc.bias[4:].fill_(-30.0)
        imgs, specs = make_batch(self.args.seed + 2, 0, 120, size_words=False)
        x = to_tensor(imgs)
        rec = self.vae.decode(self.vae.encode(x).latent_dist.sample()).sample.clamp(-1, 1)
        mse = F.mse_loss(rec, x).item()
        rec_u8 = ((rec + 1) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
        sc = score([s.caption for s in specs], list(rec_u8))
        m = {
            "phase": "vae",
            "step": self.step,
            "psnr_db": round(10 * math.log10(4.0 / mse), 2),
            "recon_colour": sc["colour"],
            "recon_shape": sc["shape"],
            "minutes": round(self.elapsed.get("vae", 0) / 60, 1),
        }
        self.metrics.append(m)
        log(f"VAE done: {m}")
        self._tick()
        self.phase, self.step = "pool", 0
        self.save()

    # ---- phase 2: latent pool -------------------------------------------------------------------------------------
    @torch.no_grad()
    def build_pool(self) -> None:
        from webui.models.tokenizer import load_clip_tokenizer

        a = self.args
        tok = load_clip_tokenizer(cache_dir=self.work / "tokenizer")
        self.vae.eval()
        lat, ids, caps = [], [], []
        t0 = time.time()
        for start in range(0, a.pool, 256):
            n = min(256, a.pool - start)
            imgs, specs = make_batch(a.seed + 3, start, n)
            lat.append(self.encode_mean(to_tensor(imgs)))
            c = [s.caption for s in specs]
            caps.extend(c)
            ids.append(tok(c, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids)
        latents = torch.cat(lat)
        std = latents.std().item()
        self.scaling = 1.0 / std
        empty = tok([""], padding="max_length", max_length=77, return_tensors="pt").input_ids[0]
        atomic_torch_save(
            {
                "latents": latents.half(),
                "ids": torch.cat(ids).int(),
                "empty": empty.int(),
                "captions": caps,
                "mean": latents.mean().item(),
                "std": std,
            },
            self.pool_path,
        )
        m = {
            "phase": "pool",
            "size": a.pool,
            "latent_std": round(std, 4),
            "latent_mean": round(latents.mean().item(), 4),
            "scaling_factor": round(self.scaling, 5),
            "seconds": round(time.time() - t0, 1),
        }
        self.metrics.append(m)
        log(f"pool done: {m}")
        self._tick()
        self.phase, self.step = "unet", 0
        self.save()

    # ---- phase 3: UNet + text encoder -----------------------------------------------------------------------------
    def _init_unet_training(self) -> None:
        a = self.args
        params = list(self.unet.parameters()) + list(self.te.parameters())
        self.opt = torch.optim.AdamW(params, lr=a.lr, betas=(0.9, 0.99), weight_decay=0.01)
        self.ema_unet = copy.deepcopy(self.unet).eval().requires_grad_(False)
        self.ema_te = copy.deepcopy(self.te).eval().requires_grad_(False)

    def unet_lr(self, step: int) -> float:
        a = self.args
        if step < a.warmup:
            return a.lr * (step + 1) / a.warmup
        start = a.unet_steps * (1 - a.decay_frac)
        if step < start:
            return a.lr
        frac = (step - start) / max(1, a.unet_steps - start)
        return a.lr * (a.final_lr_frac + (1 - a.final_lr_frac) * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))

    def train_unet(self) -> None:
        from diffusers import DDPMScheduler

        a = self.args
        pool = torch.load(self.pool_path, map_location="cpu", weights_only=False)
        latents = pool["latents"].float() * self.scaling
        ids, empty = pool["ids"].long(), pool["empty"].long()
        noise_sched = DDPMScheduler.from_config(scheduler_config())
        acp = noise_sched.alphas_cumprod.float()
        snr = acp / (1 - acp)
        weight_t = torch.clamp(snr, max=a.min_snr) / snr
        if self.opt is None:
            self._init_unet_training()
        self.vae.requires_grad_(False)
        self.unet.train()
        self.te.train()
        params = list(self.unet.parameters()) + list(self.te.parameters())
        t0, losses = time.time(), []
        log(f"unet phase: {len(latents)} latents, scaling {self.scaling:.4f}, {a.unet_steps} steps, batch {a.batch}")
        while self.step < a.unet_steps:
            self.tuner.before(self.step)
            g = self.gen
            idx = torch.randint(0, len(latents), (a.batch,), generator=g)
            x0 = latents[idx]
            tok = ids[idx].clone()
            drop = torch.rand(a.batch, generator=g) < a.uncond_prob
            tok[drop] = empty
            noise = torch.randn(x0.shape, generator=g)
            t = torch.randint(0, noise_sched.config.num_train_timesteps, (a.batch,), generator=g)
            xt = noise_sched.add_noise(x0, noise, t)
            lr = self.unet_lr(self.step)
            for pg in self.opt.param_groups:
                pg["lr"] = lr
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
                ctx = self.te(tok)[0]
                pred = self.unet(xt, t, ctx).sample
            per = (pred.float() - noise).pow(2).mean(dim=(1, 2, 3))
            loss = (per * weight_t[t]).mean()
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            self.opt.step()
            self.tuner.after()
            self.step += 1
            decay = min(a.ema, (1 + self.step) / (10 + self.step))
            ema_update(self.ema_unet, self.unet, decay)
            ema_update(self.ema_te, self.te, decay)
            losses.append(loss.item())
            if self.step % 25 == 0:
                self._tick()
                log(
                    f"unet step {self.step}/{a.unet_steps} loss {np.mean(losses):.4f} lr {lr:.2e} "
                    f"{(time.time() - t0) / len(losses):.2f}s/step  elapsed {self.elapsed['unet'] / 60:.1f} min"
                )
                losses, t0 = [], time.time()
            if a.eval_every and self.step % a.eval_every == 0 and self.step < a.unet_steps:
                self.quick_eval()
                t0 = time.time()
            self.maybe_save()
        self._tick()
        self.phase = "export"
        self.save()

    def pipeline(self):
        from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionPipeline

        from webui.models.tokenizer import load_clip_tokenizer

        self.vae.register_to_config(scaling_factor=self.scaling)
        pipe = StableDiffusionPipeline(
            vae=self.vae,
            text_encoder=self.ema_te,
            unet=self.ema_unet,
            tokenizer=load_clip_tokenizer(cache_dir=self.work / "tokenizer"),
            scheduler=EulerAncestralDiscreteScheduler.from_config(scheduler_config()),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def quick_eval(self) -> None:
        from tools.demo_model.evaluate import evaluate

        self._tick()
        res = evaluate(self.pipeline(), self.args.eval_n, seed=1234, scheduler_config=scheduler_config())
        self._tick()  # don't count evaluation as training time
        self.elapsed["unet"] -= res["seconds"]
        m = {
            "phase": "unet",
            "step": self.step,
            "minutes": round(self.elapsed["unet"] / 60, 1),
            "colour": round(res["colour"], 3),
            "shape": round(res["shape"], 3),
            "eval_n": res["n"],
        }
        self.metrics.append(m)
        log(f"EVAL (EMA, Euler a, 20 steps, CFG 7, {res['n']} prompts): {m}")

    # ---- phase 4: export --------------------------------------------------------------------------------------------
    def export(self) -> None:
        from webui.models.ldm_keys import save_a1111_checkpoint
        from tools.demo_model.evaluate import evaluate, load_pipeline

        a = self.args
        out = Path(a.out)
        cfg = easel_config(self.scaling)
        self.vae.register_to_config(scaling_factor=self.scaling)
        save_a1111_checkpoint(out, self.ema_unet, self.vae, self.ema_te, easel_config=cfg, dtype=torch.float16)
        size = out.stat().st_size
        counts = {"unet": n_params(self.ema_unet), "vae": n_params(self.vae), "text_encoder": n_params(self.ema_te)}
        log(f"exported {out} ({size / 2**20:.2f} MiB); params {counts}; easel_config {json.dumps(cfg)}")
        loaded = load_pipeline(out, self.work / "loader-cache")
        assert loaded.probe.native_size == NATIVE, loaded.probe
        details: list = []
        res = evaluate(loaded.pipeline, a.final_n, seed=a.seed + 99, details=details)
        m = {
            "phase": "export",
            "file": str(out),
            "bytes": size,
            "params": counts,
            "easel_config": cfg,
            "final_eval": {"sampler": "Euler a", "steps": 20, "cfg": 7, **res},
            "minutes": {k: round(v / 60, 1) for k, v in self.elapsed.items()},
            "total_minutes": round(sum(self.elapsed.values()) / 60, 1),
            "unet_steps": self.step,
        }
        self.metrics.append(m)
        self.phase = "done"
        self.save()
        (self.work / "final_metrics.json").write_text(json.dumps(self.metrics, indent=1))
        log("FINAL METRICS")
        for row in self.metrics:
            log("  " + json.dumps(row))

    def run(self) -> None:
        if not self.load():
            log(
                f"fresh start, seed {self.args.seed}; params: unet {n_params(self.unet) / 1e6:.2f}M, "
                f"vae {n_params(self.vae) / 1e6:.2f}M, text encoder {n_params(self.te) / 1e6:.2f}M"
            )
        self._t_mark = time.time()
        if self.phase == "vae":
            self.train_vae()
        if self.phase == "pool":
            self.build_pool()
        if self.phase == "unet":
            self.train_unet()
        if self.phase in ("export", "done"):
            if self.phase == "done" and not self.args.reexport:
                log("already done (pass --reexport to export and evaluate again)")
                for row in self.metrics:
                    log("  " + json.dumps(row))
                return
            if self.opt is None:
                self._init_unet_training()  # builds the EMA modules; their weights come from the state
                s = torch.load(self.state_path, map_location="cpu", weights_only=False)
                self.ema_unet.load_state_dict(s["ema_unet"])
                self.ema_te.load_state_dict(s["ema_te"])
            self.phase = "export"
            self.export()


STOP = {"requested": False}


def _request_stop(signum, frame) -> None:  # SIGTERM/SIGINT: save at the end of the current step, then exit
    STOP["requested"] = True


def main() -> None:
    import signal

    signal.signal(signal.SIGTERM, _request_stop)
    signal.signal(signal.SIGINT, _request_stop)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default=str(WORK))
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--vae-steps", type=int, default=600)
    ap.add_argument("--vae-batch", type=int, default=32)
    ap.add_argument("--vae-lr", type=float, default=2e-3)
    ap.add_argument("--vae-crop", type=int, default=32, help="crop size for 3 of 4 VAE steps (0 = whole images)")
    ap.add_argument("--pool", type=int, default=24000)
    ap.add_argument("--unet-steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--decay-frac", type=float, default=0.3, help="cosine-decay the lr over this last fraction")
    ap.add_argument("--final-lr-frac", type=float, default=0.1)
    ap.add_argument("--ema", type=float, default=0.996)
    ap.add_argument("--min-snr", type=float, default=5.0)
    ap.add_argument("--uncond-prob", type=float, default=0.1)
    ap.add_argument("--no-bf16", dest="bf16", action="store_false")
    ap.add_argument("--eval-every", type=int, default=400)
    ap.add_argument("--eval-n", type=int, default=30)
    ap.add_argument("--final-n", type=int, default=60)
    ap.add_argument("--save-every", type=float, default=180.0, help="seconds between state saves")
    ap.add_argument("--reexport", action="store_true")
    ap.add_argument("--restart-unet", action="store_true", help="start the UNet phase afresh (keeps VAE and pool)")
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads; 0 = pick 1 or 2 by measurement")
    ap.add_argument("--smoke", action="store_true", help="a few steps of each phase into work/smoke/")
    args = ap.parse_args()
    if args.smoke:
        args.work = str(WORK / "smoke")
        args.out = str(WORK / "smoke" / "easel-demo.safetensors")
        args.vae_steps, args.pool, args.unet_steps, args.warmup = 6, 512, 6, 2
        args.eval_every, args.eval_n, args.final_n = 3, 6, 6
    torch.set_num_threads(args.threads or 2)
    Trainer(args).run()


if __name__ == "__main__":
    main()
