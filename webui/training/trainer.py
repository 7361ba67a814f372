"""LoRA training with peft on a pipeline's own UNet (and optionally text encoder).

The adapter is added to the modules in place, trained, and removed again by `teardown()`: the base weights are
frozen and never change. One optimizer step = `grad_accum` micro-batches of cached latents. Everything that makes
a run reproducible (adapter weights, optimizer and LR-scheduler state, step, losses, noise RNG) is in the state file,
so a run resumes exactly where its last save left it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from webui.training.dataset import LatentCache
from webui.training.export import target_modules
from webui.training.state import StateError, load_state, save_state

ADAPTER = "easel_train"
STATE_VERSION = 2  # 2: safetensors + JSON (state.py); 1 was a torch pickle, never loaded again
STATE_FILE = "state.safetensors"
LEGACY_STATE = "state.pt"
log = logging.getLogger("easel.training")


@dataclass
class TrainConfig:
    steps: int = 500  # optimizer steps
    batch_size: int = 1
    grad_accum: int = 1
    learning_rate: float = 1e-4
    text_encoder_lr: float | None = None  # None: learning_rate
    lr_scheduler: str = "constant"  # constant | cosine | linear (each with warmup_steps)
    warmup_steps: int = 0
    rank: int = 8
    alpha: float = 8.0
    targets: str = "attention"  # attention | attention+ff
    train_text_encoder: bool = False
    noise_offset: float = 0.0
    min_snr_gamma: float = 0.0  # 0: off
    seed: int = 0
    repeats: int = 1
    resolution: int = 512
    gradient_checkpointing: bool = False
    mixed_precision: str = "no"  # no | fp16 | bf16 (CUDA only)
    optimizer: str = "adamw"  # adamw | adamw8bit (bitsandbytes on CUDA)
    weight_decay: float = 1e-2
    max_grad_norm: float = 1.0

    def compat_key(self) -> dict[str, Any]:
        """What must match for a saved state to be resumed."""
        return {k: getattr(self, k) for k in ("rank", "alpha", "targets", "train_text_encoder", "optimizer")}


@dataclass
class TrainOutcome:
    step: int
    losses: list[float]
    stopped: bool
    resumed_from: int = 0


@dataclass
class TrainHooks:
    progress: Callable[[int, int, float], None] | None = None
    should_stop: Callable[[], bool] | None = None
    save: Callable[[int], None] | None = None  # called after the state is saved at `step`
    save_every: int = 0
    sample: Callable[[int], None] | None = None
    sample_every: int = 0


def compute_snr(alphas_cumprod: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    a = alphas_cumprod[timesteps].float()
    return a / (1.0 - a)


class LoraTrainer:
    def __init__(
        self,
        pipe,
        config: TrainConfig,
        data: LatentCache,
        *,
        scheduler_config: dict | None = None,
        state_file: Path | None = None,
        match: dict[str, Any] | None = None,
        extra_state: dict[str, Any] | None = None,
    ):
        from diffusers import DDPMScheduler

        self.pipe, self.cfg, self.data = pipe, config, data
        self.unet, self.te = pipe.unet, pipe.text_encoder if config.train_text_encoder else None
        self.noise_scheduler = DDPMScheduler.from_config(scheduler_config or pipe.scheduler.config)
        self.state_file, self.match, self.extra_state = state_file, dict(match or {}), dict(extra_state or {})
        self.device = self.unet.device
        self.step, self.resumed_from = 0, 0
        self.losses: list[float] = []
        self.generator = torch.Generator("cpu").manual_seed(config.seed)
        self._embeds: dict[str, torch.Tensor] = {}
        try:
            self._setup()
        except BaseException:
            self.teardown()  # never leave a half-added adapter on a serving model
            raise

    # --- setup / teardown ----------------------------------------------------------------------------------------
    def _add_adapter(self, module, text_encoder: bool) -> list[torch.nn.Parameter]:
        from peft import LoraConfig

        from webui.lora.service import _tuner_layers

        module.requires_grad_(False)
        cfg = LoraConfig(
            r=self.cfg.rank,
            lora_alpha=self.cfg.alpha,
            init_lora_weights="gaussian",
            target_modules=target_modules(self.cfg.targets, text_encoder=text_encoder),
        )
        with torch.random.fork_rng(devices=[]):  # a seeded init, without touching the process's RNG
            torch.manual_seed(self.cfg.seed + (1 if text_encoder else 0))
            module.add_adapter(cfg, adapter_name=ADAPTER)
        for layer in _tuner_layers(module):  # a layer disabled earlier keeps the flag for new adapters (PITFALLS)
            layer.enable_adapters(True)
            layer.set_adapter(ADAPTER)
        params = [p for n, p in module.named_parameters() if f".{ADAPTER}." in n]
        for p in params:
            p.data = p.data.float()
            p.requires_grad_(True)
        return params

    def _setup(self) -> None:
        from diffusers.optimization import get_scheduler

        cfg = self.cfg
        self.pipe.text_encoder.requires_grad_(False)
        self.pipe.vae.requires_grad_(False)
        groups: list[dict[str, Any]] = [{"params": self._add_adapter(self.unet, False), "lr": cfg.learning_rate}]
        if self.te is not None:
            groups.append({"params": self._add_adapter(self.te, True), "lr": cfg.text_encoder_lr or cfg.learning_rate})
        if cfg.gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
        self.params = [p for g in groups for p in g["params"]]
        if cfg.optimizer == "adamw8bit":
            import bitsandbytes as bnb  # checked before the job starts

            self.optimizer = bnb.optim.AdamW8bit(groups, weight_decay=cfg.weight_decay)
        else:
            self.optimizer = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
        name = {"constant": "constant_with_warmup", "cosine": "cosine", "linear": "linear"}[cfg.lr_scheduler]
        self.lr_scheduler = get_scheduler(
            name, self.optimizer, num_warmup_steps=cfg.warmup_steps, num_training_steps=cfg.steps
        )
        self.scaler = torch.amp.GradScaler("cuda") if self._autocast_dtype() == torch.float16 else None
        if self.state_file is not None:
            legacy = self.state_file.with_name(LEGACY_STATE)
            if legacy != self.state_file and legacy.exists():
                log.warning(
                    "ignoring %s: resume states from before this version were pickles, which Easel no longer "
                    "loads (they could run code); the run starts over. Delete the file to hide this.",
                    legacy,
                )
            if self.state_file.exists():
                self._load_state()

    def teardown(self) -> None:
        """Remove the adapter: the pipeline is exactly the base model again."""
        from diffusers.utils.peft_utils import delete_adapter_layers

        for module in (self.unet, self.pipe.text_encoder):
            if ADAPTER in (getattr(module, "peft_config", None) or {}):
                delete_adapter_layers(module, ADAPTER)
            module.requires_grad_(False)
            module.eval()
        if self.cfg.gradient_checkpointing:
            self.unet.disable_gradient_checkpointing()
        self._embeds.clear()

    # --- state ---------------------------------------------------------------------------------------------------
    def adapter_state(self) -> dict[str, dict[str, torch.Tensor]]:
        from webui.training.export import adapter_state_dicts

        unet_sd, te_sd = adapter_state_dicts(self.unet, self.te, ADAPTER)
        return {"unet": unet_sd, "text_encoder": te_sd}

    def save_state(self) -> None:
        state = {
            "version": STATE_VERSION,
            "step": self.step,
            "losses": list(self.losses),
            "config": asdict(self.cfg),
            "compat": {**self.cfg.compat_key(), **self.match},
            "adapter": self.adapter_state(),
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.lr_scheduler.state_dict(),
            "generator": self.generator.get_state(),
            "extra": self.extra_state,
            "saved_at": time.time(),
        }
        assert self.state_file is not None  # callers check state_file first
        save_state(self.state_file, state)

    def _load_state(self) -> None:
        from peft import set_peft_model_state_dict

        assert self.state_file is not None  # callers check state_file first
        try:
            state = load_state(self.state_file)  # safetensors + JSON: nothing is ever unpickled
        except StateError as e:  # a damaged or foreign state is only a lost resume point
            log.warning("cannot read training state %s (%s): starting over", self.state_file, e)
            return
        if state.get("version") != STATE_VERSION or state.get("compat") != {**self.cfg.compat_key(), **self.match}:
            log.info("training state %s is for other settings: starting over", self.state_file)
            return
        self.cfg.seed = int(state["config"]["seed"])  # the resumed run keeps its data order
        set_peft_model_state_dict(self.unet, state["adapter"]["unet"], adapter_name=ADAPTER)
        if self.te is not None:
            set_peft_model_state_dict(self.te, state["adapter"]["text_encoder"], adapter_name=ADAPTER)
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        self.generator.set_state(state["generator"])
        self.step = self.resumed_from = int(state["step"])
        self.losses = list(state["losses"])
        self.extra_state.update(state["extra"])

    # --- one step ------------------------------------------------------------------------------------------------
    def _autocast_dtype(self) -> torch.dtype | None:
        if self.device.type != "cuda" or self.cfg.mixed_precision == "no":
            return None
        return torch.float16 if self.cfg.mixed_precision == "fp16" else torch.bfloat16

    def _encode(self, captions: list[str]) -> torch.Tensor:
        tok = self.pipe.tokenizer
        if self.te is None:  # frozen text encoder: each caption is encoded once
            missing = [c for c in dict.fromkeys(captions) if c not in self._embeds]
            if missing:
                ids = tok(
                    missing, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt"
                ).input_ids.to(self.device)
                with torch.no_grad():
                    for c, e in zip(missing, self.pipe.text_encoder(ids)[0]):
                        self._embeds[c] = e
            return torch.stack([self._embeds[c] for c in captions])
        ids = tok(
            captions, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt"
        ).input_ids.to(self.device)
        return self.te(ids)[0]

    def _loss(self, batch) -> torch.Tensor:
        cfg, sched = self.cfg, self.noise_scheduler
        latents = torch.stack([s.latent for s in batch])
        b = latents.shape[0]
        noise = torch.randn(latents.shape, generator=self.generator)  # the RNG stays on the CPU: reproducible
        if cfg.noise_offset:
            noise = noise + cfg.noise_offset * torch.randn((b, latents.shape[1], 1, 1), generator=self.generator)
        t = torch.randint(0, sched.config.num_train_timesteps, (b,), generator=self.generator)
        latents, noise, t = latents.to(self.device), noise.to(self.device), t.to(self.device)
        noisy = sched.add_noise(latents, noise, t)
        target = sched.get_velocity(latents, noise, t) if sched.config.prediction_type == "v_prediction" else noise
        dtype = self.unet.dtype
        enc = self._encode([s.caption for s in batch]).to(dtype)
        amp = self._autocast_dtype()
        ctx = torch.autocast("cuda", dtype=amp) if amp else contextlib.nullcontext()
        with ctx:
            pred = self.unet(noisy.to(dtype), t, enc).sample
        loss = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
        if cfg.min_snr_gamma > 0:
            snr = compute_snr(sched.alphas_cumprod.to(self.device), t)
            weight = snr.clamp(max=cfg.min_snr_gamma)
            weight = weight / (snr + 1) if sched.config.prediction_type == "v_prediction" else weight / snr
            loss = loss * weight
        return loss.mean()

    def batches(self):
        """Batches from the step where training (re)starts, in the same order an uninterrupted run would see."""
        per_epoch = max(1, len(self.data.batches(self.cfg.batch_size, self.cfg.repeats, self.cfg.seed, 0)))
        epoch, skip = divmod(self.step * self.cfg.grad_accum, per_epoch)
        while True:
            yield from self.data.batches(self.cfg.batch_size, self.cfg.repeats, self.cfg.seed, epoch)[skip:]
            epoch, skip = epoch + 1, 0

    def train_mode(self) -> None:
        self.unet.train()
        if self.te is not None:
            self.te.train()

    def train_step(self, batches, should_stop: Callable[[], bool] | None = None) -> float | None:
        """One optimizer step over `grad_accum` micro-batches; its loss, or None when stopped midway (a partial
        accumulation is dropped, never applied)."""
        total = 0.0
        for _ in range(self.cfg.grad_accum):
            if should_stop is not None and should_stop():
                self.optimizer.zero_grad(set_to_none=True)
                return None
            loss = self._loss(next(batches)) / self.cfg.grad_accum
            (self.scaler.scale(loss) if self.scaler else loss).backward()
            total += float(loss.detach())
        self._optimizer_step()
        self.step += 1
        self.losses.append(total)
        return total

    def run(self, hooks: TrainHooks | None = None) -> TrainOutcome:
        hooks = hooks or TrainHooks()
        self.train_mode()
        batches = self.batches()
        stopped = False
        while self.step < self.cfg.steps:
            loss = self.train_step(batches, hooks.should_stop)
            if loss is None:
                stopped = True
                break
            if hooks.progress:
                hooks.progress(self.step, self.cfg.steps, loss)
            if hooks.save_every and self.step % hooks.save_every == 0 and self.step < self.cfg.steps:
                self.checkpoint(hooks)
            if hooks.sample and hooks.sample_every and self.step % hooks.sample_every == 0:
                hooks.sample(self.step)
        return TrainOutcome(step=self.step, losses=list(self.losses), stopped=stopped, resumed_from=self.resumed_from)

    def checkpoint(self, hooks: TrainHooks) -> None:
        if self.state_file is not None:
            self.save_state()
        if hooks.save:
            hooks.save(self.step)

    def _optimizer_step(self) -> None:
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        if self.cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.max_grad_norm)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.lr_scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
