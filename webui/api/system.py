"""`GET /easel/v1/system`: how this server computes — device and precision policy (and why), threads, versions,
torch.compile status, VAE tiling and the live preview method actually in use. Read-only; under /easel/ so
--api-auth covers it like every other API route.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter

if TYPE_CHECKING:
    from webui.app import Application


def system_report(application: Application) -> dict[str, Any]:
    """The report, built from the Application's own objects (no globals): usable without FastAPI too."""
    import diffusers
    import torch

    from webui import VERSION
    from webui.generation.cpu_backend import openvino_status
    from webui.generation.preview import preview_status
    from webui.models import conv_prepack
    from webui.models.compile import compile_state
    from webui.models.device import DTYPE_NAMES as names
    from webui.models.device import physical_cores
    from webui.models.precision import choose_precision
    from webui.models.vae_precision import choose_vae_precision
    from webui.models.vae_tiling import vae_memory_status

    policy, opts = application.policy, application.options
    model = application.models.active
    unet = getattr(model.pipeline, "unet", None) if model is not None else None  # SD3/FLUX: a transformer
    vae = model.pipeline.vae if model is not None else None
    setting = str(opts.get("cpu_precision"))
    return {
        "device": str(policy.device),
        "policy": {
            "label": policy.label,
            "note": policy.note,
            "cpu_bf16": policy.cpu_bf16,
            "cpu_amx": policy.cpu_amx,
            "dtype": names[policy.dtype],
            "vae_dtype": names[policy.vae_dtype],
            "offload": policy.offload,
        },
        "model": model.info.title if model is not None else None,
        # every model in the RAM cache: family, variant, dtypes, quantization, offload mode, bytes in RAM/on device
        "models": application.models.loaded_report(),
        "cpu_precision": {
            "setting": setting,
            "resolved": choose_precision(setting, policy, unet) if unet is not None else None,
            "automatic_resolves_to": choose_precision("Automatic", policy, unet) if unet is not None else None,
            "unet_parameters": sum(p.numel() for p in unet.parameters()) if unet is not None else None,
            # how a bf16 call holds the conv weights (precision.bf16_weights); a compiled UNet packs its own
            "conv_weights": "channels_last, prepacked for oneDNN"
            if conv_prepack.available()
            else "channels_last (not prepacked: this torch or CPU can't pack bf16 weights)",
        },
        "threads": {
            "torch": torch.get_num_threads(),
            "source": application.threads_source,
            "physical_cores": physical_cores(),
        },
        "versions": {"easel": VERSION, "torch": torch.__version__, "diffusers": diffusers.__version__},
        "compile": {
            "setting": bool(opts.get("cpu_compile")),
            # inductor's on-disk cache: the data folder's cache/inductor for a server, else torch's or the env's
            "cache_dir": application.inductor_cache or os.environ.get("TORCHINDUCTOR_CACHE_DIR"),
            **(compile_state(unet).report() if unet is not None else {"status": "no model loaded"}),
        },
        "vae": {
            "tiling_min_pixels": int(opts.get("vae_tiling_min_pixels")),
            **vae_memory_status(vae),
            "precision_setting": str(opts.get("cpu_vae_precision")),
            # Automatic reads the guard's verdict only: measuring here would race a running job's decode
            "precision": choose_vae_precision(
                str(opts.get("cpu_vae_precision")), policy, vae, application.models.vae_bf16_guard, measure=False
            ),
            "bf16_guard_psnr_db": (
                application.models.vae_bf16_guard.psnr(vae, measure=False) if vae is not None else None
            ),
        },
        "preview": preview_status(
            str(opts.get("show_progress_type")),
            vae,
            application.paths.models_dir / "VAE-approx",
            application.generation.previews.get(vae),
        ),
        # OpenVINO's CPU kernels (#21): cpu_attention under the torch model, cpu_backend for the whole SD UNet
        "openvino": openvino_status(
            str(opts.get("cpu_attention")),
            str(opts.get("cpu_backend")),
            policy,
            denoiser_precision(setting, policy, model),
            bool(opts.get("cpu_compile")),
            unet,
        ),
        # where jobs run (#22): the local worker thread, or Ray workers as GET /easel/v1/workers lists them
        "workers": {"mode": "local", "workers": []}
        if application.jobs.executor is None
        else {"mode": "ray", "workers": application.jobs.executor.list()},
    }


def denoiser_precision(setting: str, policy: Any, model: Any) -> str | None:
    """The active model's denoiser precision as its jobs resolve it: the UNet's cpu_precision, or the SD 3/FLUX
    transformer's dtype."""
    from webui.models.precision import choose_precision

    if model is None:
        return None
    unet = getattr(model.pipeline, "unet", None)
    if unet is not None:
        return choose_precision(setting, policy, unet)
    from webui.models.device import DTYPE_NAMES

    return DTYPE_NAMES.get(getattr(getattr(model.pipeline, "transformer", None), "dtype", None))


def build_system_router(application: Application) -> APIRouter:
    router = APIRouter(tags=["easel"])

    @router.get("/easel/v1/system", summary="Device, precision policy, threads, compile and preview status")
    def system() -> dict[str, Any]:
        return system_report(application)

    return router
