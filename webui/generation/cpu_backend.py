"""Which backend runs a job's UNet on the CPU (setting `cpu_backend`: torch | openvino; infotext `CPU backend`).

Part of planning (generation/plan.py): pure, it switches nothing; it reads the setting and the model, and puts an
`OpenVinoPlan` in the job's RuntimeConfig, which the runtime applies (models/runtime.py `cpu_backend`,
models/openvino_backend.py). The OpenVINO precision is the job's `Precision` (setting cpu_precision: bf16 → bf16
inference precision, fp32 → f32), so the infotext's "Precision" and "CPU backend" together say how it ran and paste
back to the same.

A job the backend can't run the way it was asked falls back to torch for that job, with a warning in the result and
`CPU backend: torch` in the infotext (pasting it back then reproduces what ran): the speed presets that hook the
torch UNet (step cache, token merging), a UNet with added conditions (SDXL, LCM), SD 3 and FLUX (a transformer, no
UNet: generation/flow_txt2img.py plans them through here too), a non-CPU device, a hires pass with its own checkpoint
or prompt (another LoRA set). Without the openvino package the job is refused with the
install line. Extensions that pass extra inputs to the UNet at each step (ControlNet, IP-Adapter) are refused when
the first step is called (openvino_backend.Unsupported).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from webui.errors import InvalidRequest
from webui.models import openvino_backend as ovb


def fallback_reason(req: Any, plan: Any, services: Any) -> str:
    """Why this job runs on torch although cpu_backend is openvino ("" when it can run on OpenVINO)."""
    runtime = plan.runtime
    if services.manager.policy.device.type != "cpu":
        return "the model runs on a GPU"
    pipe = plan.model.pipeline
    if getattr(pipe, "unet", None) is None and getattr(pipe, "transformer", None) is not None:
        return f"{plan.model.probe.label} runs a transformer (the backend converts SD UNets only)"
    why = ovb.supports(getattr(pipe, "unet", None))
    if why:
        return why
    presets = [
        name
        for name, on in (
            ("step cache", runtime.step_cache >= 2),
            ("token merging", runtime.token_merging > 0 or runtime.token_merging_hr > 0),
        )
        if on
    ]
    if presets:
        return f"{' and '.join(presets)} hook the torch UNet"
    if getattr(req, "enable_hr", False) and (req.hr_checkpoint_name or req.hr_prompt):
        return "the hires pass has its own checkpoint or prompt (so maybe another LoRA set)"
    return ""


def checkpoint_identity(model: Any) -> str:
    """What the IR's weights come from: the checkpoint's sha256, and (size, mtime_ns) of the file as it was read when
    there is no hash (a file replaced under the same path is another IR), or for a folder, whose hash may be of its
    model_index.json alone (catalog.folder_hash)."""
    info = model.info
    if info.sha256 and not info.is_folder:
        return info.sha256
    size, mtime_ns = model.file_stamp
    return f"{info.sha256 or info.path}|{size}|{mtime_ns}"


def plan_cpu_backend(req: Any, plan: Any, services: Any, opts: Any) -> None:
    """Set `plan.runtime.openvino` (and the infotext field) when the job's UNet runs on OpenVINO."""
    if str(opts.get("cpu_backend") or "torch") != "openvino":
        return
    why = fallback_reason(req, plan, services)
    if why:
        plan.warnings.append(f"CPU backend openvino: {why}; this job ran on torch")
        plan.extra_params["CPU backend"] = "torch"
        return
    ov, missing = ovb.import_openvino()
    if ov is None:
        raise InvalidRequest(f"cpu_backend is openvino but {missing}; or set cpu_backend to torch")
    model = plan.model
    adapters = services.loras.unet_adapter_set(model) if services.loras is not None else ()
    checkpoint = checkpoint_identity(model)
    import torch

    plan.runtime = replace(
        plan.runtime,
        precision="fp32",  # the torch UNet's own fast path stays off: OpenVINO applies the precision
        compile=False,
        openvino=ovb.OpenVinoPlan(
            key=ovb.ir_key(checkpoint, adapters, ov.__version__),
            cache_dir=str(services.manager.cache_root.parent / "openvino"),
            precision="bf16" if plan.precision == "bf16" else "f32",
            threads=torch.get_num_threads(),
            cache_mb=int(opts.get("openvino_cache_mb")),
        ),
    )
    plan.extra_params["CPU backend"] = "openvino"


def attention_fallback(plan: Any, services: Any) -> str:
    """Why OpenVINO's attention kernel is not used for this job's UNet ("" when it can be)."""
    if services.manager.policy.device.type != "cpu":
        return "the model runs on a GPU"
    if plan.runtime.compile:
        return "cpu_compile is on (the compiled UNet has its own attention)"
    return ""


def plan_cpu_attention(plan: Any, services: Any, opts: Any) -> None:
    """Set `plan.runtime.cpu_attention` when the UNet's attention runs on OpenVINO's kernel (setting cpu_attention:
    Automatic uses it for a bf16 UNet on a CPU when the openvino package is there; models/attention_kernel.py)."""
    setting = str(opts.get("cpu_attention") or "Automatic")
    if plan.runtime.openvino is not None:  # the whole UNet runs on OpenVINO: nothing to route
        return
    if setting == "torch":
        if _automatic_would_route(plan, services):
            plan.extra_params["CPU attention"] = "torch"  # pasted back, it stays torch where openvino is installed
        return
    why = attention_fallback(plan, services)
    ov, missing = ovb.import_openvino()
    if setting == "openvino":
        if ov is None:
            raise InvalidRequest(f"cpu_attention is openvino but {missing}; or set cpu_attention to Automatic")
        if why:
            plan.warnings.append(f"CPU attention openvino: {why}; this job used torch's")
            plan.extra_params["CPU attention"] = "torch"
            return
    elif ov is None or why or plan.precision != "bf16":
        return
    plan.runtime = replace(plan.runtime, cpu_attention=True)
    plan.extra_params["CPU attention"] = "openvino"


def _automatic_would_route(plan: Any, services: Any) -> bool:
    ov, _ = ovb.import_openvino()
    return ov is not None and plan.precision == "bf16" and not attention_fallback(plan, services)


def openvino_status(setting: str, backend: str, policy: Any, precision: str | None, compile_on: bool) -> dict:
    """What /easel/v1/system says about OpenVINO: the package, the two settings, and which attention kernel the
    active model's jobs use now (`precision`: its denoiser's resolved precision; None without a model)."""
    ov, why = ovb.import_openvino()
    if precision is None:
        attention = None
    elif backend == "openvino" or setting == "torch" or ov is None or compile_on or policy.device.type != "cpu":
        attention = "torch" if backend != "openvino" else "none (the whole UNet runs on OpenVINO)"
    else:
        attention = "openvino" if setting == "openvino" or precision == "bf16" else "torch"
    return {
        "version": ov.__version__ if ov is not None else None,
        "missing": why or None,
        "cpu_backend": backend,
        "cpu_attention": setting,
        "attention_kernel": attention,
    }
