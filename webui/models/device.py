"""Which device and precision models run on, decided once from the flags and the hardware."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DevicePolicy:
    device: torch.device
    dtype: torch.dtype  # UNet and text encoder
    vae_dtype: torch.dtype
    offload: str = "none"  # none | model (--medvram) | sequential (--lowvram)

    @property
    def label(self) -> str:
        names = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
        return f"{self.device.type} {names[self.dtype]} (VAE {names[self.vae_dtype]})" + (
            f", offload {self.offload}" if self.offload != "none" else "")


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
    return DevicePolicy(device=device, dtype=dtype, vae_dtype=vae_dtype, offload=offload)
