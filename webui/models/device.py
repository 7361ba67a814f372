"""Which device and precision models run on, decided once from the flags and the hardware."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

import torch


# torch dtype → the name the infotext, /easel/v1/system and the UI footer use
DTYPE_NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


def _cpu_flags() -> str | None:
    """/proc/cpuinfo's text (the kernel's view of the CPU flags), None where there is none (not Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return None


def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bf16 natively (AVX-512 BF16 or AMX), as reported by both oneDNN and the kernel.
    Checked, never assumed: without it bf16 is emulated and slower than fp32."""
    try:
        if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return False
    except (AttributeError, RuntimeError):
        return False
    flags = _cpu_flags()
    if flags is None:  # not Linux: trust oneDNN's answer
        return True
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_has_amx() -> bool:
    """True when torch's CPU kernels can use AMX tiles (Intel Xeon 4th gen and later). There torch's bf16 flash
    attention beats OpenVINO's kernel at every SD shape (docs/performance.md), so cpu_attention's Automatic keeps it.
    torch has no public API for this: its private probe is read defensively, /proc/cpuinfo otherwise."""
    probe = getattr(getattr(torch, "cpu", None), "_is_amx_tile_supported", None)
    if probe is not None:
        try:
            return bool(probe())
        except RuntimeError:
            pass
    return "amx_tile" in (_cpu_flags() or "")


@dataclass(frozen=True)
class DevicePolicy:
    device: torch.device
    dtype: torch.dtype  # UNet and text encoder weights
    vae_dtype: torch.dtype
    offload: str = "none"  # none | model (--medvram) | group (--lowvram): offload.py, with setting gpu_weights_mb
    offload_device: torch.device | None = None  # where offloaded weights wait (RAM); None: no GPU, nothing to offload
    cpu_bf16: bool = False  # the CPU can run the UNet under bf16 autocast (the CPU fast path)
    cpu_amx: bool = False  # the CPU has AMX tiles (torch's bf16 attention is then faster than OpenVINO's kernel)
    # SD 3/FLUX transformers and their text encoders (family_flow.py): the GPU's half precision, bf16 on a CPU with
    # native bf16, else fp32. Their files are bf16 (or quantized): fp32 would double their RAM (docs/performance.md).
    flow_dtype: torch.dtype = torch.float32
    lowram: bool = False  # --lowram on the CPU: SD3/FLUX text encoders released between encodings (lowram.py)
    note: str = ""  # why the policy is what it is, for the UI footer and /easel/v1/system

    @property
    def label(self) -> str:
        label = f"{self.device.type} {DTYPE_NAMES[self.dtype]} (VAE {DTYPE_NAMES[self.vae_dtype]})"
        if self.cpu_bf16:
            label += ", UNet bf16 autocast available"
        return (
            label
            + (f", offload {self.offload}" if self.offload != "none" else "")
            + (", text encoders loaded per prompt (--lowram)" if self.lowram else "")
        )


def choose_policy(
    *,
    use_cpu: list[str] | None = None,
    device_id: int | None = None,
    no_half: bool = False,
    no_half_vae: bool = False,
    medvram: bool = False,
    lowvram: bool = False,
    lowram: bool = False,
) -> DevicePolicy:
    """CUDA, then MPS, then the CPU; fp16 on a GPU unless --no-half, fp32 on the CPU (A1111's defaults)."""
    force_cpu = any(x in ("all", "sd") for x in use_cpu or ())
    if not force_cpu and torch.cuda.is_available():
        device = torch.device(f"cuda:{device_id or 0}")
    elif not force_cpu and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        device = torch.device("mps")
    else:
        device = torch.device("cpu")
    gpu = device.type != "cpu"
    half = gpu_half_dtype(device) if gpu else torch.float32
    dtype = half if gpu and not no_half else torch.float32
    vae_dtype = half if gpu and not (no_half or no_half_vae) else torch.float32
    offload = "group" if gpu and lowvram else "model" if gpu and medvram else "none"
    cpu_bf16, note = False, ""
    if gpu and dtype == torch.bfloat16:
        note = "this GPU supports bf16: bf16 instead of fp16 (same speed, no fp16 overflow in the VAE)"
    if not gpu:
        if medvram or lowvram:
            note = "no GPU: --medvram/--lowvram have nothing to offload to (the weights are in RAM already); "
        if no_half:
            note += "--no-half: fp32 everywhere"
        elif cpu_has_native_bf16():
            cpu_bf16, note = (
                True,
                note
                + (
                    "this CPU has native bf16: the UNet may run under bf16 autocast "
                    "(cpu_precision Automatic: for UNets of 20M parameters or more)"
                ),
            )
        else:
            note += (
                "this CPU has no native bf16 (neither AVX-512 BF16 nor AMX, or oneDNN can't use them): fp32, "
                "since emulated bf16 is slower than fp32"
            )
    return DevicePolicy(
        device=device,
        dtype=dtype,
        flow_dtype=dtype if gpu else torch.bfloat16 if cpu_bf16 else torch.float32,
        vae_dtype=vae_dtype,
        offload=offload,
        offload_device=torch.device("cpu") if gpu else None,
        cpu_bf16=cpu_bf16,
        cpu_amx=not gpu and cpu_has_amx(),
        note=note,
        lowram=lowram and not gpu,
    )


def gpu_half_dtype(device: torch.device) -> torch.dtype:
    """The GPU's half precision: bf16 on a CUDA device that supports it (Ampere and newer), else fp16 (A1111's
    default). bf16 runs as fast there and has fp32's range, so the VAE can't overflow into NaN (black images)."""
    if device.type == "cuda":
        try:
            if torch.cuda.is_bf16_supported():
                return torch.bfloat16
        except (RuntimeError, AssertionError):
            pass
    return torch.float16


def physical_cores() -> int:
    """Physical cores this process may run on: distinct (package, core) pairs of the CPUs in its affinity mask.
    Hyper-threads share a core's vector units, so oneDNN/OpenMP gain nothing from them and lose to contention."""
    try:
        allowed = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        allowed = set(range(os.cpu_count() or 1))
    cores, cpu, package = set(), None, "0"
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return max(1, len(allowed))
    for line in lines:
        key, _, value = (part.strip() for part in line.partition(":"))
        if key == "processor":
            cpu, package = int(value), "0"
        elif key == "physical id":
            package = value
        elif key == "core id" and cpu in allowed:
            cores.add((package, value))
    return max(1, len(cores) or len(allowed))


@dataclass(frozen=True)
class ThreadPlan:
    count: int | None  # None: leave torch's setting alone
    source: str  # why, for /easel/v1/system


def choose_threads(requested: int | None, environ: Mapping[str, str], *, owns_process: bool) -> ThreadPlan:
    """--threads wins; then OMP_NUM_THREADS (the user's or the embedding process's choice, which torch already
    follows); then, only when Easel owns the process (launched as the server), one thread per physical core. An
    embedding process (the test suite pins 1 thread, a notebook) keeps its own setting."""
    if requested:
        return ThreadPlan(requested, "--threads")
    if environ.get("OMP_NUM_THREADS"):
        return ThreadPlan(None, f"OMP_NUM_THREADS={environ['OMP_NUM_THREADS']}")
    if not owns_process:
        return ThreadPlan(None, "set by the embedding process")
    return ThreadPlan(physical_cores(), "physical cores")


def apply_threads(plan: ThreadPlan) -> int:
    """Apply the plan; returns the thread count torch now uses."""
    if plan.count:
        torch.set_num_threads(plan.count)
    return torch.get_num_threads()
