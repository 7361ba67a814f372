"""The names the UI's model and sampler lists hold now, for code outside webui/ui (the extension API's
`ext.choices(kind)`), and the folders whose files those lists show (what `FolderWatch` lists)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from webui.models import samplers

if TYPE_CHECKING:
    from webui.flags import Paths
    from webui.models.manager import ModelManager

CHOICE_LISTS = ("checkpoints", "vae", "samplers", "schedulers")


def named_choices(manager: ModelManager, kind: str) -> list[str]:
    """Checkpoint titles, the `sd_vae` values (Automatic, None, each file), sampler names or schedule type labels,
    as the UI's dropdowns list them now."""
    if kind == "checkpoints":
        return [info.title for info in manager.catalog.list()]
    if kind == "vae":
        return ["Automatic", "None", *[v.name for v in manager.vaes]]
    if kind == "samplers":
        return samplers.sampler_names()
    if kind == "schedulers":
        return [s["label"] for s in samplers.api_schedulers()]
    raise ValueError(f"unknown list {kind!r}; lists: {', '.join(CHOICE_LISTS)}")


def model_folders(paths: Paths) -> list[Path]:
    """Checkpoints, VAEs, LoRAs (and LyCORIS), embeddings and ControlNet models."""
    return [
        paths.ckpt_dir,
        paths.vae_dir,
        paths.lora_dir,
        paths.lycoris_dir,
        paths.embeddings_dir,
        paths.controlnet_dir,
    ]
