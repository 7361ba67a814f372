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


def attention_kernel(
    setting: str, precision: str | None, device: str, compile_on: bool, whole_unet: bool, amx: bool
) -> tuple:
    """Which kernel a job's attention runs on under `setting` (cpu_attention): ("openvino" | "torch" | "none", why
    not OpenVINO's). The one rule for planning a job and for /easel/v1/system. `precision`: the denoiser's resolved
    precision; `whole_unet`: the UNet itself runs on OpenVINO (cpu_backend), which leaves nothing to route; `amx`:
    the CPU has AMX tiles, where torch's bf16 flash attention is the faster one (×1.05–2.4 per SD call against
    OpenVINO's on a Xeon with AMX, while OpenVINO's is ×1.2–2.1 faster on an AVX-512 BF16 CPU without AMX:
    docs/performance.md), so Automatic keeps torch's there."""
    if whole_unet:
        return "none", "the whole UNet runs on OpenVINO (cpu_backend)"
    if setting == "torch":
        return "torch", "cpu_attention is torch"
    ov, missing = ovb.import_openvino()
    if ov is None:
        return "torch", missing
    if device != "cpu":
        return "torch", "the model runs on a GPU"
    if compile_on:
        return "torch", "cpu_compile is on (the compiled UNet has its own attention)"
    if setting != "openvino" and precision != "bf16":
        return "torch", "Automatic uses OpenVINO's kernel for bf16 models only"
    if setting != "openvino" and amx:
        return "torch", "Automatic keeps torch's attention on a CPU with AMX (it is faster there)"
    return "openvino", ""


def plan_cpu_attention(plan: Any, services: Any, opts: Any) -> None:
    """Set `plan.runtime.cpu_attention` when the denoiser's attention runs on OpenVINO's kernel (setting
    cpu_attention: Automatic uses it for a bf16 model on a CPU when the openvino package is there;
    models/attention_kernel.py)."""
    setting = str(opts.get("cpu_attention") or "Automatic")
    if setting == "openvino":
        ov, missing = ovb.import_openvino()
        if ov is None:
            raise InvalidRequest(f"cpu_attention is openvino but {missing}; or set cpu_attention to Automatic")
    facts = (
        plan.precision,
        services.manager.policy.device.type,
        plan.runtime.compile,
        plan.runtime.openvino is not None,
        services.manager.policy.cpu_amx,
    )
    kernel, why = attention_kernel(setting, *facts)
    if kernel == "openvino":
        plan.runtime = replace(plan.runtime, cpu_attention=True)
        plan.extra_params["CPU attention"] = "openvino"
    elif kernel == "torch" and setting == "openvino":
        plan.warnings.append(f"CPU attention openvino: {why}; this job used torch's")
        plan.extra_params["CPU attention"] = "torch"
    elif kernel == "torch" and setting == "torch" and attention_kernel("Automatic", *facts)[0] == "openvino":
        plan.extra_params["CPU attention"] = "torch"  # pasted back, it stays torch where openvino is installed


def openvino_status(
    setting: str, backend: str, policy: Any, precision: str | None, compile_on: bool, unet: Any
) -> dict:
    """What /easel/v1/system says about OpenVINO: the package, the two settings, and which attention kernel the
    active model's jobs use now (`precision`: its denoiser's resolved precision, None without a model; `unet`: its
    UNet, None for a transformer, which cpu_backend leaves on torch)."""
    ov, missing = ovb.import_openvino()
    whole_unet = backend == "openvino" and unet is not None and not ovb.supports(unet)
    kernel = None
    if precision is not None:
        kernel, _ = attention_kernel(setting, precision, policy.device.type, compile_on, whole_unet, policy.cpu_amx)
    return {
        "version": ov.__version__ if ov is not None else None,
        "missing": missing or None,
        "cpu_backend": backend,
        "cpu_attention": setting,
        "attention_kernel": kernel,
    }
