"""Read-only /sdapi/v1 lists: cmd-flags, samplers, schedulers, upscalers, latent-upscale-modes,
memory, face-restorers, realesrgan-models. Features Easel does not have answer with honest empty lists, never fake
entries. (scripts, script-info and extensions are in webui/api/extensions.py.)"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter

from webui.api.schemas import (
    FaceRestorerItem,
    LatentUpscalerModeItem,
    MemoryResponse,
    RealesrganItem,
    SamplerItem,
    SchedulerItem,
    UpscalerItem,
)
from webui.flags import public_cmd_flags
from webui.generation.upscalers import LATENT_MODES, list_upscalers
from webui.models import samplers

if TYPE_CHECKING:
    from webui.app import Application


def _proc_meminfo() -> dict[str, int]:
    values = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, _, rest = line.partition(":")
            values[key] = int(rest.split()[0]) * 1024
    return values


def ram_usage() -> dict[str, Any]:
    """A1111's shape: used = this process's RSS, total = physical RAM, free = total - used."""
    try:
        import psutil

        rss = psutil.Process(os.getpid()).memory_info().rss
        total = psutil.virtual_memory().total
    except ImportError:
        try:
            total = _proc_meminfo()["MemTotal"]
            with open("/proc/self/statm") as f:
                rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, KeyError, ValueError) as e:
            return {"error": str(e)}
    return {"free": total - rss, "used": rss, "total": total}


def cuda_usage(device: Any) -> dict[str, Any]:
    try:
        import torch

        if not torch.cuda.is_available() or getattr(device, "type", "cpu") != "cuda":
            return {"error": "unavailable"}
        free, total = torch.cuda.mem_get_info(device)
        s = dict(torch.cuda.memory_stats(device))

        def pair(name: str) -> dict[str, int]:
            return {"current": s.get(f"{name}.all.current", 0), "peak": s.get(f"{name}.all.peak", 0)}

        return {
            "system": {"free": free, "used": total - free, "total": total},
            "active": pair("active_bytes"),
            "allocated": pair("allocated_bytes"),
            "reserved": pair("reserved_bytes"),
            "inactive": pair("inactive_split_bytes"),
            "events": {"retries": s.get("num_alloc_retries", 0), "oom": s.get("num_ooms", 0)},
        }
    except Exception as e:  # memory stats are informational
        return {"error": str(e)}


def add_info_routes(r: APIRouter, app: Application) -> None:
    @r.get("/cmd-flags", response_model=dict[str, Any])
    def cmd_flags() -> dict[str, Any]:
        return public_cmd_flags(app.ns)

    @r.get("/samplers", response_model=list[SamplerItem])
    def get_samplers() -> list[dict[str, Any]]:
        return samplers.api_samplers()

    @r.get("/schedulers", response_model=list[SchedulerItem])
    def get_schedulers() -> list[dict[str, Any]]:
        return samplers.api_schedulers()

    @r.get("/upscalers", response_model=list[UpscalerItem])
    def upscalers() -> list[UpscalerItem]:
        return [UpscalerItem(**u.api()) for u in list_upscalers(app.paths.models_dir)]

    @r.get("/latent-upscale-modes", response_model=list[LatentUpscalerModeItem])
    def latent_upscale_modes() -> list[LatentUpscalerModeItem]:
        return [LatentUpscalerModeItem(name=n) for n in LATENT_MODES]

    @r.get("/memory", response_model=MemoryResponse)
    def memory() -> MemoryResponse:
        return MemoryResponse(ram=ram_usage(), cuda=cuda_usage(app.policy.device))

    @r.get("/face-restorers", response_model=list[FaceRestorerItem])
    def face_restorers() -> list[FaceRestorerItem]:
        return []

    @r.get("/realesrgan-models", response_model=list[RealesrganItem])
    def realesrgan_models() -> list[RealesrganItem]:
        return []
