"""Training as a job on the shared queue: the request (the API's exact field names), validation before anything
starts, and the job itself: load the checkpoint through the model manager, cache latents, train, save, export.

Nothing is written until the job runs, and an invalid request raises InvalidRequest at submit time. The resume
state lives in `<data-dir>/training/<name>/state.safetensors` (tensors + JSON, never a pickle): a request with the
same name and compatible settings continues from it (after a cancel, which saves, or a restart, from the last
periodic save). It is removed when a run completes.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from webui.errors import Conflict, EaselError, InvalidRequest, ModelNotFound
from webui.generation.requests import MAX_SEED
from webui.training.dataset import load_dataset
from webui.training.plan import TrainingPlan, TrainingStatus
from webui.training.trainer import STATE_FILE, TrainConfig

if TYPE_CHECKING:
    from webui.app import Application

JOB_KIND = "train-lora"
MAX_TRAIN_STEPS = 1_000_000
MAX_TRAIN_BATCH_PIXELS = 64 * 512 * 512  # batch_size × resolution²: what one step holds in memory
_BAD_NAME = re.compile(r'[\\/:*?"<>|,\x00-\x1f]')


class TrainLoraRequest(BaseModel):
    """`POST /easel/v1/train/lora`: exactly these fields; unset ones take the defaults below (ranges: _ranges)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str
    dataset_dir: str
    checkpoint: str = ""  # title, name or hash; "" = the selected checkpoint
    steps: int = 500
    batch_size: int = 1
    learning_rate: float = 1e-4
    rank: int = 8
    alpha: Optional[float] = None  # None: the rank (LoRA scale 1)
    resolution: Optional[int] = None  # None: the checkpoint's native size
    seed: int = -1
    caption: str = ""  # caption template with the trigger word; {caption} = the image's .txt
    train_text_encoder: bool = False
    save_every: int = 100
    sample_every: int = 0
    sample_prompt: str = ""
    overwrite: bool = False  # replace a LoRA this trainer made earlier under this name (else 409: asked first)


class TrainOptions(BaseModel):
    """The Train tab's advanced options (the API uses their defaults)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    repeats: int = 1
    epochs: int = 0  # > 0: train this many epochs instead of `steps`
    grad_accum: int = 1
    lr_scheduler: Literal["constant", "cosine", "linear"] = "constant"
    warmup_steps: int = 0
    targets: Literal["attention", "attention+ff"] = "attention"
    text_encoder_lr: Optional[float] = None
    noise_offset: float = 0.0
    min_snr_gamma: float = 0.0
    gradient_checkpointing: bool = False
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    optimizer: Literal["adamw", "adamw8bit"] = "adamw"
    save_precision: Literal["fp16", "bf16", "fp32"] = "fp16"
    sample_steps: int = 20


M = TypeVar("M", bound=BaseModel)


def _coerce(model: type[M], value: Any) -> M:
    if isinstance(value, model):
        return value
    try:
        return model.model_validate(value or {})
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "request"
        raise InvalidRequest(f"{where}: {first.get('msg', 'invalid')}", detail=str(e)) from None


def _check_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise InvalidRequest("name is empty")
    if _BAD_NAME.search(name) or name.startswith(".") or ".." in name or len(name) > 100:
        raise InvalidRequest(
            f"name {name!r} is not a plain file name: use letters, digits, spaces, '-', '_' or '.' "
            '(no path separators or any of : * ? " < > | ,)'
        )
    return name


def _ranges(req: TrainLoraRequest, opt: TrainOptions) -> None:
    checks = [
        (1 <= req.rank <= 1024, "rank must be between 1 and 1024"),
        (req.alpha is None or 0 < req.alpha <= 10000, "alpha must be above 0"),
        (opt.epochs > 0 or 1 <= req.steps <= MAX_TRAIN_STEPS, f"steps must be between 1 and {MAX_TRAIN_STEPS}"),
        (1 <= req.batch_size <= 64, "batch_size must be between 1 and 64"),
        (0 < req.learning_rate <= 1, "learning_rate must be above 0 and at most 1"),
        (req.resolution is None or 64 <= req.resolution <= 4096, "resolution must be between 64 and 4096"),
        (req.save_every >= 0 and req.sample_every >= 0, "save_every and sample_every must be 0 or more"),
        (1 <= opt.repeats <= 1000 and 0 <= opt.epochs <= 10000, "repeats must be 1..1000 and epochs 0..10000"),
        (1 <= opt.grad_accum <= 1024 and opt.warmup_steps >= 0, "grad_accum must be 1..1024, warmup_steps >= 0"),
        (opt.text_encoder_lr is None or 0 < opt.text_encoder_lr <= 1, "text_encoder_lr must be above 0"),
        (0 <= opt.noise_offset <= 1 and 0 <= opt.min_snr_gamma <= 100, "noise_offset 0..1, min_snr_gamma 0..100"),
        (1 <= opt.sample_steps <= 150, "sample_steps must be between 1 and 150"),
        (-1 <= req.seed <= MAX_SEED, f"seed must be -1 (random) or 0..{MAX_SEED}"),
        (
            req.save_every <= MAX_TRAIN_STEPS
            and req.sample_every <= MAX_TRAIN_STEPS
            and opt.warmup_steps <= MAX_TRAIN_STEPS,
            f"save_every, sample_every and warmup_steps must be at most {MAX_TRAIN_STEPS}",
        ),
        (
            (req.resolution or 512) ** 2 * req.batch_size <= MAX_TRAIN_BATCH_PIXELS,
            f"batch_size × resolution² must be at most {MAX_TRAIN_BATCH_PIXELS} pixels (e.g. 64 at 512, 16 at 1024, "
            f"1 at 4096)",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise InvalidRequest(message)


def _check_device(application: Application, opt: TrainOptions) -> None:
    on_gpu = getattr(application.policy.device, "type", "cpu") == "cuda"
    if opt.mixed_precision != "no" and not on_gpu:
        raise InvalidRequest(f"{opt.mixed_precision} training needs a CUDA GPU; use mixed_precision 'no' on the CPU")
    if opt.optimizer == "adamw8bit":
        import importlib.util

        if not on_gpu or importlib.util.find_spec("bitsandbytes") is None:
            raise InvalidRequest("8-bit AdamW needs bitsandbytes and a CUDA GPU; use 'adamw'")


def _dataset_folder(application: Application, folder: str) -> str:
    """As given on loopback; when exposed, only a folder inside the data dir (no listing or walking /etc or /)."""
    from webui.pathguard import PathOutside, confine, exposed_roots

    if exposed_roots(application) is None or not str(folder).strip():
        return folder
    data_dir = application.paths.data_dir
    try:
        return str(confine(folder, [data_dir], base=data_dir, what="dataset folder"))
    except PathOutside:
        raise InvalidRequest(
            f"dataset folder not found: {folder!r} (the server is reachable from the network: "
            "datasets must be inside the data dir, e.g. <data-dir>/training/datasets/)"
        ) from None


def check_request(application: Application, req: Any, options: Any = None) -> TrainingPlan:
    """Every check that can fail, before anything is written or queued. Raises InvalidRequest."""
    from webui.models.families import Family
    from webui.models.loader import probe_file

    req, opt = _coerce(TrainLoraRequest, req), _coerce(TrainOptions, options)
    name = _check_name(req.name)
    _ranges(req, opt)
    _check_device(application, opt)
    query = req.checkpoint.strip() or str(application.options.get("sd_model_checkpoint") or "")
    try:
        info = application.catalog.find(query) if query else application.catalog.default()
    except ModelNotFound as e:
        raise InvalidRequest(e.message) from None
    if info is None:
        raise InvalidRequest("no checkpoint to train on: put one in models/Stable-diffusion/")
    native = 512
    if not info.is_folder:
        try:
            probe = probe_file(info.path)
        except EaselError as e:
            raise InvalidRequest(f"checkpoint {info.name} cannot be read: {e.message}") from None
        if probe.family == Family.SDXL or probe.inpainting:
            raise InvalidRequest(f"LoRA training supports SD 1.x/2.x checkpoints; {info.name} is {probe.label}")
        native = probe.native_size
    dataset = load_dataset(_dataset_folder(application, req.dataset_dir), req.caption)
    output = application.paths.lora_dir / f"{name}.safetensors"
    work_dir = application.paths.data_dir / "training" / name
    if output.exists() and not _ours(output, name):
        raise InvalidRequest(
            f"{output.name} already exists in the LoRA folder and was not trained here under this "
            "name: pick another name"
        )
    partial = output.with_name(f"{output.stem}-partial.safetensors")
    resuming = (work_dir / STATE_FILE).exists()  # a stopped run of this name continues (its own saves)
    replaces = output.exists() and (not resuming or partial.exists())
    if replaces and not req.overwrite:
        raise Conflict(
            f"a LoRA named {name!r} already exists ({output.name}, {_trained(output)}): tick "
            f'"Overwrite existing LoRA" to replace it when the new run completes, or pick another name'
        )
    per_epoch = -(-len(dataset.items) * opt.repeats // req.batch_size)  # about: buckets may add a batch or two
    steps = max(1, opt.epochs * per_epoch // opt.grad_accum) if opt.epochs else req.steps
    if steps > MAX_TRAIN_STEPS:
        raise InvalidRequest(
            f"{opt.epochs} epochs of {len(dataset.items)} images × {opt.repeats} repeats are {steps} "
            f"steps, over the limit of {MAX_TRAIN_STEPS}: use fewer epochs or repeats"
        )
    seed = req.seed if req.seed >= 0 else int(time.time() * 1000) % (2**31)
    config = TrainConfig(
        steps=steps,
        batch_size=req.batch_size,
        grad_accum=opt.grad_accum,
        learning_rate=req.learning_rate,
        text_encoder_lr=opt.text_encoder_lr,
        lr_scheduler=opt.lr_scheduler,
        warmup_steps=opt.warmup_steps,
        rank=req.rank,
        alpha=float(req.alpha if req.alpha is not None else req.rank),
        targets=opt.targets,
        train_text_encoder=req.train_text_encoder,
        noise_offset=opt.noise_offset,
        min_snr_gamma=opt.min_snr_gamma,
        seed=seed,
        repeats=opt.repeats,
        resolution=req.resolution or native,
        gradient_checkpointing=opt.gradient_checkpointing,
        mixed_precision=opt.mixed_precision,
        optimizer=opt.optimizer,
    )
    return TrainingPlan(
        req=req.model_copy(update={"name": name}),
        options=opt,
        checkpoint=info,
        dataset=dataset,
        config=config,
        output=output,
        work_dir=work_dir,
        native_size=native,
        replaces=replaces,
    )


def _ours(path: Path, name: str) -> bool:
    """A file this trainer wrote under this name (so a new or resumed run may replace it)."""
    from webui.models.loader import read_header

    try:
        _, meta = read_header(path)
    except EaselError:
        return False
    return meta.get("easel_trainer") is not None and meta.get("ss_output_name") == name


def _trained(path: Path) -> str:
    """ "trained 500 steps, 2026-12-07 06:40" from a LoRA's kohya metadata (what the overwrite question shows)."""
    from webui.models.loader import read_header

    try:
        _, meta = read_header(path)
    except EaselError:
        meta = {}
    steps = meta.get("ss_steps")
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(path.stat().st_mtime))
    return f"{steps} steps, saved {when}" if steps else f"saved {when}"


def existing_lora_note(application: Application, name: str) -> str | None:
    """A plain sentence when training `name` would replace a file (the Train tab shows it as the name is typed)."""
    try:
        name = _check_name(name)
    except InvalidRequest:
        return None
    output = application.paths.lora_dir / f"{name}.safetensors"
    if not output.exists():
        return None
    if not _ours(output, name):
        return f"{output.name} already exists and was not trained here: pick another name."
    return (
        f"{output.name} already exists ({_trained(output)}). Training under this name replaces it only when "
        '"Overwrite existing LoRA" is ticked, and only once the new run completes.'
    )


def start_training(application: Application, params: Any, options: Any = None, *, job_id: str | None = None):
    """Validate, then queue a "train-lora" job. `job.training` is its live TrainingStatus; its value {name, path}.
    The history keeps the request (with the checkpoint it resolved to), so a job still waiting when the server
    stopped is queued again at the next start (`job_id`: under its own id; webui/lifecycle.py)."""
    from webui.lifecycle import request_record
    from webui.training.run import run_training

    plan = check_request(application, params, options)
    status = TrainingStatus(total_steps=plan.config.steps)
    body = plan.req.model_dump(mode="json")
    body["checkpoint"] = body.get("checkpoint") or plan.checkpoint.title
    record = request_record(JOB_KIND, body, from_api=True, options=plan.options.model_dump(mode="json"))
    remote = None
    if application.workers is not None:  # --workers ray: the run goes to a worker
        from webui.workers.remote_training import training_work

        remote = training_work(application, plan, status)
    job = application.jobs.submit(
        JOB_KIND,
        plan.req.model_dump(mode="json"),
        lambda j: run_training(application, plan, j, status),
        request=record,
        job_id=job_id,
        remote=remote,
    )
    job.training = status
    return job


def training_summary(job) -> dict[str, Any] | None:
    """What history keeps of a finished training job."""
    status = getattr(job, "training", None)
    if status is None:
        return None
    return {
        **(status.result or {}),
        "step": status.step,
        "total_steps": status.total_steps,
        "losses": list(status.losses),
        "samples": list(status.samples),
    }
