"""Extras upscaling."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image

from webui.errors import InvalidRequest
from webui.generation.extras import ExtrasRequest, run_extras

if TYPE_CHECKING:
    import torch


def _img():
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))


def test_lanczos_by_two_matches_pil_and_is_saved(tmp_path):
    from webui.outputs import OutputWriter

    img = _img()
    out, texts, paths = run_extras(
        [(img, "a")],
        ExtrasRequest(upscaler_1="Lanczos", upscaling_resize=2),
        models_dir=tmp_path,
        outputs=OutputWriter(tmp_path),
        save=True,
        max_pixels=10**7,
    )
    assert out[0].size == (64, 48)
    assert np.array_equal(np.asarray(out[0]), np.asarray(img.resize((64, 48), Image.LANCZOS)))
    assert "Postprocess upscale by: 2" in texts[0] and "Postprocess upscaler: Lanczos" in texts[0]
    saved = Image.open(paths[0])
    assert "/outputs/extras-images/" in paths[0] and saved.size == (64, 48)
    assert "Postprocess upscaler: Lanczos" in saved.info["postprocessing"]


def test_scale_to_with_crop_and_second_upscaler(tmp_path):
    req = ExtrasRequest(
        resize_mode=1,
        upscaling_resize_w=40,
        upscaling_resize_h=40,
        upscaler_1="Nearest",
        upscaler_2="Lanczos",
        extras_upscaler_2_visibility=0.5,
    )
    out, texts, _ = run_extras([(_img(), "a")], req, models_dir=tmp_path, outputs=None, save=False, max_pixels=10**7)
    assert out[0].size == (40, 40) and "Postprocess upscaler 2: Lanczos" in texts[0]


def test_unknown_upscaler_and_oversize_are_clear_errors(tmp_path):
    with pytest.raises(InvalidRequest, match="unknown upscaler"):
        run_extras(
            [(_img(), "a")],
            ExtrasRequest(upscaler_1="Magic"),
            models_dir=tmp_path,
            outputs=None,
            save=False,
            max_pixels=10**7,
        )
    with pytest.raises(InvalidRequest, match="over the limit"):
        run_extras(
            [(_img(), "a")],
            ExtrasRequest(upscaler_1="Lanczos", upscaling_resize=8),
            models_dir=tmp_path,
            outputs=None,
            save=False,
            max_pixels=1000,
        )


def tiny_esrgan(path: Path, scale: int = 4) -> torch.nn.Module:
    """A real ESRGAN (RRDBNet, the old-arch key layout A1111's ESRGAN files use) with 8 filters and one block,
    random weights, written to `path` (.pth as a plain state dict, or .safetensors)."""
    import torch

    from webui.generation.upscaler_models import load_spandrel

    load_spandrel()  # registers spandrel without its torchvision-importing __init__
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(0)
    net = ESRGAN(num_filters=8, num_blocks=1, scale=scale).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, str(path))
    return net


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_esrgan_file_upscales_through_extras_exactly_as_the_network(tmp_path, suffix):
    import torch

    from webui.generation.upscalers import list_upscalers

    net = tiny_esrgan(tmp_path / "ESRGAN" / f"4x-tiny{suffix}")
    assert {u.name: u.error for u in list_upscalers(tmp_path)}["4x-tiny"] is None
    img = _img()
    out, texts, _ = run_extras(
        [(img, "a")],
        ExtrasRequest(upscaler_1="4x-tiny", upscaling_resize=4),
        models_dir=tmp_path,
        outputs=None,
        save=False,
        max_pixels=10**7,
    )
    assert out[0].size == (128, 96) and "Postprocess upscaler: 4x-tiny" in texts[0]
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        ref = (net(x)[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255).round()
    assert np.abs(np.asarray(out[0], dtype=np.float32) - ref).max() <= 1  # the network's own pixels, not a resize
    assert not np.array_equal(np.asarray(out[0]), np.asarray(img.resize((128, 96), Image.LANCZOS)))
    import sys

    assert "torchvision" not in sys.modules  # spandrel ran without it


def test_esrgan_at_scale_two_is_resized_to_the_asked_size(tmp_path):
    tiny_esrgan(tmp_path / "ESRGAN" / "2x-tiny.pth", scale=2)
    out, _, _ = run_extras(
        [(_img(), "a")],
        ExtrasRequest(upscaler_1="2x-tiny", upscaling_resize=3),
        models_dir=tmp_path,
        outputs=None,
        save=False,
        max_pixels=10**7,
    )
    assert out[0].size == (96, 72)


def test_bad_model_files_are_clear_errors(tmp_path):
    import torch

    (tmp_path / "ESRGAN").mkdir()
    (tmp_path / "ESRGAN" / "4x-junk.pth").write_bytes(b"not a model")
    torch.save({"encoder.weight": torch.zeros(3, 3)}, str(tmp_path / "ESRGAN" / "4x-other.pth"))
    for name, message in (
        ("4x-junk", "can't be used: can't read 4x-junk.pth as a state dict"),
        ("4x-other", "is not a model architecture spandrel knows"),
    ):
        with pytest.raises(InvalidRequest, match=message):
            run_extras(
                [(_img(), "a")],
                ExtrasRequest(upscaler_1=name),
                models_dir=tmp_path,
                outputs=None,
                save=False,
                max_pixels=10**7,
            )


def test_torchvision_architectures_are_left_out_with_the_reason():
    from webui.generation.upscaler_models import load_spandrel

    sp = load_spandrel()
    assert "ESRGAN" in sp.registry and "SwinIR" in sp.registry and "Compact" in sp.registry
    if sp.skipped:  # without torchvision (as Easel installs it): exactly the two that import it
        assert set(sp.skipped) == {"LaMa", "RestoreFormer"} and "torchvision" in sp.skipped["LaMa"]


def test_without_spandrel_files_are_listed_with_the_reason(tmp_path, monkeypatch):
    """Never faked: without spandrel an ESRGAN file is listed with why, and selecting it is a clear error."""
    from webui.generation import upscalers

    monkeypatch.setattr(upscalers, "missing_reason", lambda: "spandrel is not installed")
    (tmp_path / "ESRGAN").mkdir()
    (tmp_path / "ESRGAN" / "4x-test.pth").write_bytes(b"x")
    assert {u.name: u.error for u in upscalers.list_upscalers(tmp_path)}["4x-test"] == "spandrel is not installed"
    with pytest.raises(InvalidRequest, match="can't be used: spandrel is not installed"):
        run_extras(
            [(_img(), "a")],
            ExtrasRequest(upscaler_1="4x-test"),
            models_dir=tmp_path,
            outputs=None,
            save=False,
            max_pixels=10**7,
        )


def test_hires_fix_with_an_esrgan_model(make_app, data_dir):
    """Hires fix's image upscaler can be a model file: the first pass goes through the network, then img2img."""
    from webui.generation.requests import Txt2ImgRequest

    tiny_esrgan(data_dir / "models" / "ESRGAN" / "4x-tiny.safetensors")
    app = make_app("--nowebui")
    hires = dict(
        prompt="a square",
        steps=2,
        seed=3,
        width=64,
        height=64,
        enable_hr=True,
        hr_scale=2,
        hr_second_pass_steps=1,
        denoising_strength=0.5,
    )
    r = app.jobs.wait(app.submit_txt2img(Txt2ImgRequest(hr_upscaler="4x-tiny", **hires), from_api=True))
    lanczos = app.jobs.wait(app.submit_txt2img(Txt2ImgRequest(hr_upscaler="Lanczos", **hires), from_api=True))
    assert r.images[0].size == (128, 128) and "Hires upscaler: 4x-tiny" in r.infotexts[0]
    assert not np.array_equal(np.asarray(r.images[0]), np.asarray(lanczos.images[0]))


def test_a_batch_reads_the_upscaler_model_once(tmp_path, monkeypatch):
    from webui.generation import upscalers

    tiny_esrgan(tmp_path / "ESRGAN" / "4x-tiny.pth")
    reads = []
    real = upscalers.load_model
    monkeypatch.setattr(upscalers, "load_model", lambda path: reads.append(path) or real(path))
    out, _, _ = run_extras(
        [(_img(), "a"), (_img(), "b"), (_img(), "c")],
        ExtrasRequest(upscaler_1="4x-tiny", upscaling_resize=4),
        models_dir=tmp_path,
        outputs=None,
        save=False,
        max_pixels=10**7,
    )
    assert [o.size for o in out] == [(128, 96)] * 3 and len(reads) == 1
