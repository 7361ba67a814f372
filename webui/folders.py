"""The folders Easel's flags resolve to (A1111's layout under the data and models folders).

Standard library only, like webui.flags: launch.py resolves them before the venv exists.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Paths:
    repo_dir: Path
    data_dir: Path
    models_dir: Path
    ckpt_dir: Path
    vae_dir: Path
    lora_dir: Path
    lycoris_dir: Path
    controlnet_dir: Path
    esrgan_dir: Path
    embeddings_dir: Path
    extensions_dir: Path
    outputs_dir: Path
    config_file: Path
    cache_file: Path
    db_file: Path
    demo_dir: Path
    styles_files: tuple[Path, ...]


def _path(value: str | os.PathLike[str]) -> Path:
    # Relative flags resolve against the working directory, as in A1111.
    return Path(value).expanduser().resolve()


def resolve_paths(ns: argparse.Namespace) -> Paths:
    data = _path(ns.data_dir)
    models = _path(ns.models_dir) if ns.models_dir else data / "models"

    def opt(value: str | None, default: Path) -> Path:
        return _path(value) if value else default

    return Paths(
        repo_dir=REPO_DIR,
        data_dir=data,
        models_dir=models,
        ckpt_dir=opt(ns.ckpt_dir, models / "Stable-diffusion"),
        vae_dir=opt(ns.vae_dir, models / "VAE"),
        lora_dir=opt(ns.lora_dir, models / "Lora"),
        lycoris_dir=models / "LyCORIS",
        controlnet_dir=models / "ControlNet",
        esrgan_dir=models / "ESRGAN",
        embeddings_dir=opt(ns.embeddings_dir, data / "embeddings"),
        extensions_dir=opt(ns.extensions_dir, data / "extensions"),
        outputs_dir=data / "outputs",
        config_file=data / "config.json",
        cache_file=data / "cache.json",
        db_file=data / "easel.db",
        demo_dir=REPO_DIR / "models" / "Demo",
        styles_files=tuple(_path(s) for s in ns.styles_file) or (data / "styles.csv",),
    )
