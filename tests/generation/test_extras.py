"""Extras upscaling."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from webui.errors import InvalidRequest
from webui.generation.extras import ExtrasRequest, run_extras


def _img():
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))


def test_lanczos_by_two_matches_pil_and_is_saved(tmp_path):
    from webui.outputs import OutputWriter

    img = _img()
    out, texts, paths = run_extras([(img, "a")], ExtrasRequest(upscaler_1="Lanczos", upscaling_resize=2),
                                   models_dir=tmp_path, outputs=OutputWriter(tmp_path), save=True, max_pixels=10**7)
    assert out[0].size == (64, 48)
    assert np.array_equal(np.asarray(out[0]), np.asarray(img.resize((64, 48), Image.LANCZOS)))
    assert "Postprocess upscale by: 2" in texts[0] and "Postprocess upscaler: Lanczos" in texts[0]
    saved = Image.open(paths[0])
    assert "/outputs/extras-images/" in paths[0] and saved.size == (64, 48)
    assert "Postprocess upscaler: Lanczos" in saved.info["postprocessing"]


def test_scale_to_with_crop_and_second_upscaler(tmp_path):
    req = ExtrasRequest(resize_mode=1, upscaling_resize_w=40, upscaling_resize_h=40, upscaler_1="Nearest",
                        upscaler_2="Lanczos", extras_upscaler_2_visibility=0.5)
    out, texts, _ = run_extras([(_img(), "a")], req, models_dir=tmp_path, outputs=None, save=False, max_pixels=10**7)
    assert out[0].size == (40, 40) and "Postprocess upscaler 2: Lanczos" in texts[0]


def test_unknown_upscaler_and_oversize_are_clear_errors(tmp_path):
    with pytest.raises(InvalidRequest, match="unknown upscaler"):
        run_extras([(_img(), "a")], ExtrasRequest(upscaler_1="Magic"), models_dir=tmp_path, outputs=None,
                   save=False, max_pixels=10**7)
    with pytest.raises(InvalidRequest, match="over the limit"):
        run_extras([(_img(), "a")], ExtrasRequest(upscaler_1="Lanczos", upscaling_resize=8), models_dir=tmp_path,
                   outputs=None, save=False, max_pixels=1000)


def test_model_files_are_listed_with_their_error(tmp_path):
    """Without spandrel an ESRGAN file is listed with the reason, and selecting it is a clear error (never faked)."""
    import importlib.util

    from webui.generation.upscalers import list_upscalers

    (tmp_path / "ESRGAN").mkdir()
    (tmp_path / "ESRGAN" / "4x-test.pth").write_bytes(b"x")
    names = {u.name: u for u in list_upscalers(tmp_path)}
    assert "4x-test" in names
    if importlib.util.find_spec("spandrel") is None:
        assert names["4x-test"].error == "spandrel is not installed"
        with pytest.raises(InvalidRequest, match="can't be used: spandrel is not installed"):
            run_extras([(_img(), "a")], ExtrasRequest(upscaler_1="4x-test"), models_dir=tmp_path, outputs=None,
                       save=False, max_pixels=10**7)
