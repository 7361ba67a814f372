"""Which device and precision models run on, decided once from the flags and the hardware."""

from __future__ import annotations

from dataclasses import dataclass

import torch


def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bf16 natively (AVX-512 BF16 or AMX), as reported by both oneDNN and the kernel.
    Checked, never assumed: without it bf16 is emulated and slower than fp32."""
    try:
        if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return False
    except (AttributeError, RuntimeError):
        return False
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:  # not Linux: trust oneDNN's answer
        return True
    return "avx512_bf16" in flags or "amx_bf16" in flags


@dataclass(frozen=True)
class DevicePolicy:
    device: torch.device
    dtype: torch.dtype  # UNet and text encoder weights
    vae_dtype: torch.dtype
    offload: str = "none"  # none | model (--medvram) | sequential (--lowvram)
    cpu_bf16: bool = False  # the CPU can run the UNet under bf16 autocast (the CPU fast path)
    note: str = ""  # why the policy is what it is, for the UI footer and /easel/v1/system

    @property
    def label(self) -> str:
        names = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
        label = f"{self.device.type} {names[self.dtype]} (VAE {names[self.vae_dtype]})"
        if self.cpu_bf16:
            label += ", UNet bf16 autocast available"
        return label + (f", offload {self.offload}" if self.offload != "none" else "")


def choose_policy(*, use_cpu: list[str] | None = None, device_id: int | None = None, no_half: bool = False,
                  no_half_vae: bool = False, medvram: bool = False, lowvram: bool = False) -> DevicePolicy:
    """CUDA, then MPS, then the CPU; fp16 on a GPU unless --no-half, fp32 on the CPU (A1111's defaults)."""
    force_cpu = bool(use_cpu) and any(x in ("all", "sd") for x in use_cpu)
    if not force_cpu and torch.cuda.is_available():
        device = torch.device(f"cuda:{device_id or 0}")
    elif not force_cpu and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        device = torch.device("mps")
    else:
        device = torch.device("cpu")
    gpu = device.type != "cpu"
    dtype = torch.float16 if gpu and not no_half else torch.float32
    vae_dtype = torch.float16 if gpu and not (no_half or no_half_vae) else torch.float32
    offload = "sequential" if gpu and lowvram else "model" if gpu and medvram else "none"
    cpu_bf16, note = False, ""
    if not gpu:
        if no_half:
            note = "--no-half: fp32 everywhere"
        elif cpu_has_native_bf16():
            cpu_bf16, note = True, "this CPU has native bf16: the UNet may run under bf16 autocast"
        else:
            note = "this CPU has no native bf16: fp32"
    return DevicePolicy(device=device, dtype=dtype, vae_dtype=vae_dtype, offload=offload, cpu_bf16=cpu_bf16,
                        note=note)
