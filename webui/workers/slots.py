"""The head's view of its Ray workers: one WorkerSlot each (its state, what its RAM cache holds, its job), the LoRAs
a job names (for the choice of a worker), and the folders of a worker with its own data dir. No Ray here."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any


def _lora_names(task: Any) -> set[str]:
    """The LoRAs a job's prompts name (what a worker that already holds them need not read again)."""
    from webui.lora.tags import parse_prompt

    request = task.request
    texts = (getattr(request, "prompt", ""), getattr(request, "hr_prompt", ""))
    return {t.name for text in texts for t in parse_prompt(str(text or "")).loras}


def worker_paths(ns: Any) -> Any:
    """The folders of a worker with its own data dir (--ray-worker-data-dir), laid out as a head's; else None."""
    data_dir = getattr(ns, "ray_worker_data_dir", None)
    if not data_dir:
        return None
    from webui.flags import resolve_paths

    own = argparse.Namespace(
        **{
            **vars(ns),
            "data_dir": data_dir,
            "models_dir": None,
            "ckpt_dir": None,
            "vae_dir": None,
            "lora_dir": None,
            "embeddings_dir": None,
            "extensions_dir": None,
            "styles_file": [],
        }
    )
    return resolve_paths(own)


@dataclass
class WorkerSlot:
    id: str
    handle: Any
    state: str = "starting"  # starting → idle ⇄ busy; draining → gone
    info: dict[str, Any] = field(default_factory=dict)
    job: str | None = None
    jobs_done: int = 0
    last_heartbeat: float | None = None
    loaded: list[str] = field(default_factory=list)
    loras: list[str] = field(default_factory=list)  # LoRA files (stems) held on its active checkpoint

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "node": self.info.get("node"),
            "host": self.info.get("host"),
            "pid": self.info.get("pid"),
            "device": self.info.get("device"),
            "state": self.state,
            "loaded_models": list(self.loaded),
            "loaded_loras": list(self.loras),
            "job": self.job,
            "jobs_done": self.jobs_done,
            "file_loads": self.info.get("file_loads", 0),
            "files_received": list(self.info.get("files_received") or []),
            "last_heartbeat": self.last_heartbeat,
        }
