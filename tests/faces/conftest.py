"""Session-wide face models: one random GFPGAN file (~175 MB, written once) and tiny ONNX detectors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.factories_faces import write_random_gfpgan, write_tiny_detector


@pytest.fixture(scope="session")
def gfpgan_file(tmp_path_factory) -> Path:
    return write_random_gfpgan(tmp_path_factory.mktemp("gfpgan") / "GFPGANv1.4.safetensors")


@pytest.fixture(scope="session")
def detectors(tmp_path_factory) -> Path:
    """A folder with face_red.onnx (fires on red cells) and face_fixed.onnx (fires on cell 19: row 2, col 3)."""
    root = tmp_path_factory.mktemp("detectors")
    write_tiny_detector(root / "face_red.onnx", mode="red")
    write_tiny_detector(root / "face_fixed.onnx", mode="fixed", cell=19)
    return root


def link_into(src: Path, folder: Path) -> Path:
    """A model file placed in a data dir's models/ folder without copying it."""
    folder.mkdir(parents=True, exist_ok=True)
    dst = folder / src.name
    try:
        os.link(src, dst)
    except OSError:
        dst.symlink_to(src)
    return dst
