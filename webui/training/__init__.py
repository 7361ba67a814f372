"""LoRA training: datasets (checked, bucketed, latents cached), the peft trainer, kohya export, and the job."""

from webui.training.jobs import (
    JOB_KIND,
    TrainingStatus,
    TrainLoraRequest,
    TrainOptions,
    check_request,
    start_training,
    training_summary,
)

__all__ = [
    "JOB_KIND",
    "TrainLoraRequest",
    "TrainOptions",
    "TrainingStatus",
    "check_request",
    "start_training",
    "training_summary",
]
