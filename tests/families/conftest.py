"""Tiny FLUX.1 and SD 3.5 models written once per session in the layouts users have (see tests/factories_families)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.factories_families import (
    tiny_flux_pipeline,
    tiny_sd3_pipeline,
    write_diffusers_folder,
    write_flux_split,
    write_sd3_split,
)


@pytest.fixture(scope="session")
def flux_models(tmp_path_factory) -> Path:
    """models/: FLUX.1 dev and schnell transformer files (BFL layout), clip_l + t5xxl in
    text_encoder/, ae in VAE/, and a FLUX dev diffusers folder."""
    root = tmp_path_factory.mktemp("flux-models")
    write_flux_split(root, seed=0, dev=True)
    write_flux_split(root, seed=0, dev=False)  # same parts (same seeds): one of each still fits both
    write_diffusers_folder(tiny_flux_pipeline(seed=3, dev=True), root / "Stable-diffusion" / "flux-dev-diffusers")
    return root


@pytest.fixture(scope="session")
def sd3_models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sd3-models")
    write_sd3_split(root, seed=0, variant="sd35-medium")
    write_diffusers_folder(
        tiny_sd3_pipeline(seed=3, variant="sd35-large"), root / "Stable-diffusion" / "sd35-diffusers"
    )
    return root


def merge_models(dest: Path, *sources: Path) -> None:
    for src in sources:
        shutil.copytree(src, dest, dirs_exist_ok=True)
