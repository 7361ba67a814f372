"""The body of a "train-lora" job: checkpoint via the model manager, latents once, the trainer, saves and export."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from webui import VERSION_TAG
from webui.training.dataset import encode_latents
from webui.training.export import export_adapter
from webui.training.plan import TrainingPlan, TrainingStatus
from webui.training.sampling import sample_image, save_png
from webui.training.trainer import ADAPTER, LoraTrainer, TrainHooks

if TYPE_CHECKING:
    from webui.app import Application

log = logging.getLogger("easel.training")
BASE_MODEL_VERSION = {"sd1": "sd_v1", "sd2": "sd_v2"}


def bucket_step(pipe) -> int:
    """Pixel sizes must survive the VAE and every UNet downsampling: 64 for SD 1.x/2.x."""
    return int(pipe.vae_scale_factor * 2 ** (len(pipe.unet.config.block_out_channels) - 1))


def lora_metadata(
    plan: TrainingPlan, model, trainer: LoraTrainer, *, resolution: int, started_at: float, batches_per_epoch: int
) -> dict[str, Any]:
    """kohya's ss_* fields (what A1111's and other tools' LoRA browsers show)."""
    from webui.models.hashing import legacy_model_hash

    cfg, info, n = trainer.cfg, plan.checkpoint, len(plan.dataset.items)
    family = model.probe.family.value
    version = BASE_MODEL_VERSION.get(family, family)
    if family == "sd2" and model.probe.prediction_type == "v_prediction":
        version = "sd_v2_768_v"
    legacy = None
    if not info.is_folder:
        with contextlib.suppress(OSError):
            legacy = legacy_model_hash(info.path)
    return {
        "ss_output_name": plan.req.name,
        "ss_network_module": "networks.lora",
        "ss_network_dim": cfg.rank,
        "ss_network_alpha": cfg.alpha,
        "ss_base_model_version": version,
        "ss_v2": family == "sd2",
        "ss_sd_model_name": info.path.name,
        "ss_sd_model_hash": legacy,
        "ss_new_sd_model_hash": info.sha256,
        "ss_num_train_images": n * cfg.repeats,
        "ss_num_reg_images": 0,
        "ss_num_batches_per_epoch": batches_per_epoch,
        "ss_num_epochs": -(-trainer.step * cfg.grad_accum // max(1, batches_per_epoch)),
        "ss_steps": trainer.step,
        "ss_max_train_steps": cfg.steps,
        "ss_training_started_at": started_at,
        "ss_training_finished_at": time.time(),
        "ss_tag_frequency": plan.dataset.tag_frequency(cfg.repeats),
        "ss_dataset_dirs": {f"{cfg.repeats}_{plan.dataset.folder.name}": {"n_repeats": cfg.repeats, "img_count": n}},
        "ss_resolution": f"({resolution}, {resolution})",
        "ss_learning_rate": cfg.learning_rate,
        "ss_unet_lr": cfg.learning_rate,
        "ss_text_encoder_lr": (cfg.text_encoder_lr or cfg.learning_rate) if cfg.train_text_encoder else None,
        "ss_network_train_unet_only": not cfg.train_text_encoder,
        "ss_lr_scheduler": cfg.lr_scheduler,
        "ss_lr_warmup_steps": cfg.warmup_steps,
        "ss_batch_size_per_device": cfg.batch_size,
        "ss_gradient_accumulation_steps": cfg.grad_accum,
        "ss_optimizer": "torch.optim.AdamW" if cfg.optimizer == "adamw" else "bitsandbytes.optim.AdamW8bit",
        "ss_seed": cfg.seed,
        "ss_noise_offset": cfg.noise_offset or None,
        "ss_min_snr_gamma": cfg.min_snr_gamma or None,
        "ss_mixed_precision": cfg.mixed_precision,
        "ss_gradient_checkpointing": cfg.gradient_checkpointing,
        "ss_caption_template": plan.req.caption or None,
        "ss_network_targets": cfg.targets,
        "easel_trainer": VERSION_TAG,
    }


def run_training(application: Application, plan: TrainingPlan, job, status: TrainingStatus) -> dict[str, Any]:
    control, cfg, req = job.control, plan.config, plan.req
    control.job_count, control.sampling_steps = 1, cfg.steps
    status.phase = "loading checkpoint"
    model = application.models.load(plan.checkpoint.title)
    loras = application.loras
    loras.release(model)  # the service's adapters come off; its next request loads what it needs again
    pipe = model.pipeline
    step_px = bucket_step(pipe)
    resolution = max(step_px, cfg.resolution // step_px * step_px)
    status.phase = "caching latents"
    control.textinfo = "Training: caching latents"
    data = encode_latents(pipe.vae, plan.dataset, resolution, step_px)
    per_epoch = len(data.batches(cfg.batch_size, cfg.repeats, cfg.seed, 0))
    trainer = LoraTrainer(
        pipe,
        cfg,
        data,
        scheduler_config=model.scheduler_config,
        state_file=plan.state_file,
        match={"base": plan.checkpoint.sha256, "resolution": resolution},
        extra_state={"started_at": time.time()},
    )
    try:
        status.step = status.resumed_from = status._s0 = trainer.step
        status.losses = list(trainer.losses)
        control.step(trainer.step)
        started_at = trainer.extra_state["started_at"]
        saved: dict[str, Any] = {"step": -1}

        def save(step: int, *, final: bool = False) -> None:
            status.phase = "saving"
            meta = lora_metadata(
                plan, model, trainer, resolution=resolution, started_at=started_at, batches_per_epoch=per_epoch
            )
            # a run that replaces an earlier LoRA leaves it alone until it completes (#19 item 15)
            target = plan.partial_output if plan.replaces and not final else plan.output
            export_adapter(
                target,
                pipe.unet,
                trainer.te,
                ADAPTER,
                alpha=cfg.alpha,
                metadata=meta,
                dtype=plan.options.save_precision,
            )
            saved["step"], saved["path"] = step, target
            status.phase = "training"

        def progress(step: int, total: int, loss: float) -> None:
            status.step, status.loss = step, loss
            status.losses.append(loss)
            control.step(step)
            control.textinfo = f"Training {req.name}: step {step}/{total}, loss {loss:.4f}"

        def sample(step: int) -> None:
            prompt = req.sample_prompt or plan.dataset.items[0].caption
            image = sample_image(
                pipe,
                prompt,
                size=resolution,
                steps=plan.options.sample_steps,
                seed=cfg.seed,
                scheduler_config=model.scheduler_config,
            )
            status.samples.append(str(save_png(image, plan.work_dir / "samples" / f"step-{step:06d}.png")))

        hooks = TrainHooks(
            progress=progress,
            should_stop=lambda: control.interrupted,
            save=save,
            save_every=req.save_every,
            sample=sample,
            sample_every=req.sample_every,
        )
        status.phase, status._t0 = "training", time.time()
        outcome = trainer.run(hooks)
        if outcome.step > 0 and outcome.stopped and saved["step"] != outcome.step:
            trainer.checkpoint(hooks)  # resume state and export, at the last complete step
        elif outcome.step > 0 and not outcome.stopped and (saved["step"] != outcome.step or plan.replaces):
            save(outcome.step, final=True)
        if not outcome.stopped:
            plan.state_file.unlink(missing_ok=True)
            if plan.replaces:
                plan.partial_output.unlink(missing_ok=True)
    finally:
        trainer.teardown()
        loras.refresh()  # the new file is in the LoRA list at once
    status.phase = "cancelled" if control.interrupted else "done"
    status.result = {"name": req.name, "path": str(plan.output) if plan.output.exists() else None}
    if control.interrupted:  # say what a cancel left where (the partial weights, and whether a file was kept)
        partial = saved.get("path")
        status.result.update(
            partial=str(partial) if partial else None, partial_step=saved["step"], kept_existing=plan.replaces
        )
    return status.result
