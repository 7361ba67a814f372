"""none and canny, and the controlnet-aux detectors listed with the reason when they can't run."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from tests.controlnet.conftest import load_script, square


def pre():
    return load_script().lib("preprocessors")


def test_canny_marks_the_square_outline_only():
    p = pre()
    out = p.run(p.registry()["canny"], square(), resolution=64, threshold_a=100, threshold_b=200)
    assert out.size == (64, 64) and out.mode == "RGB"
    a = np.asarray(out)
    assert set(np.unique(a)) <= {0, 255}
    assert (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all()
    edges = a[..., 0] > 0
    assert edges[14:19, 20:44].any(axis=0).all()  # the top side, along its whole length
    assert edges[46:51, 20:44].any(axis=0).all()  # the bottom side
    assert edges[20:44, 14:19].any(axis=1).all()  # the left side
    assert not edges[22:42, 22:42].any()  # the flat inside
    assert not edges[:10].any() and not edges[:, :10].any()  # the flat background
    assert edges.sum() < 64 * 64 // 4  # thin lines, not blobs


def test_canny_scales_to_processor_res_and_thresholds_matter():
    p = pre()
    image = square(size=(100, 50), box=(30, 10, 70, 40))
    out = p.run(p.registry()["canny"], image, resolution=64, threshold_a=-1, threshold_b=-1)
    assert out.size == (128, 64)  # short side = processor_res, aspect kept
    from PIL import Image, ImageDraw

    flat = p.run(p.registry()["canny"], Image.new("RGB", (64, 64), (90, 90, 90)), resolution=64)
    assert not np.asarray(flat).any()
    # a faint square (value 20) shows up with low thresholds and vanishes with high ones
    faint = Image.new("RGB", (64, 64))
    ImageDraw.Draw(faint).rectangle((16, 16, 48, 48), fill=(20, 20, 20))
    assert np.asarray(p.run(p.registry()["canny"], faint, resolution=64, threshold_a=10, threshold_b=20)).any()
    assert not np.asarray(p.run(p.registry()["canny"], faint, resolution=64, threshold_a=200, threshold_b=250)).any()


def test_none_passes_the_image_through():
    p = pre()
    image = square(size=(80, 40), box=(10, 10, 30, 30))
    out = p.run(p.registry()["none"], image, resolution=512)
    assert out.size == (80, 40) and np.array_equal(np.asarray(out), np.asarray(image))


def test_aux_detectors_are_listed_unavailable_with_the_reason(tmp_path, monkeypatch):
    """shuffle and lineart_standard need no weights and run (tests/controlnet/test_aux_detectors.py); a detector
    whose annotator file is missing, or whose package is, is listed with that reason and refused."""
    p = pre()
    mods = p.registry(tmp_path)
    for name in ("shuffle", "lineart_standard"):
        assert mods[name].available and mods[name].reason is None
    reason = f"annotator weights ControlNetHED.pth not found in {tmp_path}"
    assert not mods["softedge_hed"].available and mods["softedge_hed"].reason == reason
    with pytest.raises(ValueError, match="ControlNetHED.pth not found"):
        p.run(mods["softedge_hed"], square(), resolution=64)
    monkeypatch.setitem(sys.modules, "controlnet_aux", None)  # as if controlnet-aux were not installed
    mods = p.registry(tmp_path)
    for name in ("shuffle", "lineart_standard", "softedge_hed"):
        assert not mods[name].available
        assert mods[name].reason == "controlnet-aux is not installed"
        with pytest.raises(ValueError, match="controlnet-aux is not installed"):
            p.run(mods[name], square(), resolution=64)
