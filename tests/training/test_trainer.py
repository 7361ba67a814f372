"""The trainer on its own: every option runs, buckets keep aspect ratios apart, teardown restores the base model."""

from __future__ import annotations

import torch

from tests.training.conftest import make_dataset
from webui.training.dataset import (
    assign_bucket,
    encode_latents,
    load_dataset,
    make_buckets,
)
from webui.training.run import bucket_step
from webui.training.trainer import LoraTrainer, TrainConfig, TrainHooks


def test_buckets():
    buckets = make_buckets(512, 64)
    assert (512, 512) in buckets and all(w % 64 == 0 and h % 64 == 0 for w, h in buckets)
    assert all(w * h <= 512 * 512 for w, h in buckets)
    assert assign_bucket(1024, 1024, buckets) == (512, 512)
    w, h = assign_bucket(1920, 1080, buckets)
    assert w > h and abs(w / h - 16 / 9) < 0.2


def test_every_option_runs_and_teardown_restores_the_model(app, tmp_path):
    folder = make_dataset(tmp_path / "ds", n=3)
    make_dataset(tmp_path / "ds" / "wide", n=2, size=(128, 64))  # a second aspect ratio, in a sub-folder
    pipe = app.models.active.pipeline
    ds = load_dataset(folder, "{caption}, sks")
    assert len(ds.items) == 5 and ds.items[0].caption.endswith(", sks")
    cache = encode_latents(pipe.vae, ds, 64, bucket_step(pipe))
    assert len(cache.buckets) == 2 and cache.num_images == 5
    for batch in cache.batches(2, 2, seed=0, epoch=0):
        assert len({tuple(s.latent.shape) for s in batch}) == 1  # a batch never mixes buckets

    x, t = torch.randn(1, 4, 8, 8), torch.tensor([500])
    enc = torch.randn(1, 77, pipe.unet.config.cross_attention_dim)
    with torch.no_grad():
        before = pipe.unet(x, t, enc).sample
    cfg = TrainConfig(
        steps=4,
        batch_size=2,
        grad_accum=2,
        learning_rate=1e-3,
        text_encoder_lr=5e-4,
        lr_scheduler="cosine",
        warmup_steps=1,
        rank=2,
        alpha=1,
        targets="attention+ff",
        train_text_encoder=True,
        noise_offset=0.05,
        min_snr_gamma=5,
        repeats=2,
        gradient_checkpointing=True,
        seed=7,
    )
    trainer = LoraTrainer(pipe, cfg, cache, state_file=tmp_path / "state.safetensors")
    seen, lrs = [], []
    try:
        out = trainer.run(
            TrainHooks(
                progress=lambda s, n, loss: (seen.append((s, n)), lrs.append(trainer.lr_scheduler.get_last_lr()))
            )
        )
        assert any(".ff_net_" in k or "ff.net" in k for k in trainer.adapter_state()["unet"])
        assert trainer.adapter_state()["text_encoder"]
    finally:
        trainer.teardown()
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)] and len(out.losses) == 4 and not out.stopped
    assert lrs[0] != lrs[-1] and lrs[0][1] < lrs[0][0]  # the schedule moves; the text encoder has its own LR
    with torch.no_grad():
        after = pipe.unet(x, t, enc).sample
    assert torch.equal(before, after) and not pipe.unet.training
    assert not any(p.requires_grad for p in pipe.unet.parameters())
