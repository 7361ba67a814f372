"""X/Y/Z plot axes for the SD 3/FLUX fields at tiny scale through the API: "Distilled CFG Scale" and "Shift" on FLUX
dev, "SLG scale" on SD 3.5 give cells that differ, each with its value in its infotext; hostile values are 422s
before a job is queued (request fields through the request's validation, Shift through the options' check)."""

from __future__ import annotations

import base64
import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from tests.families.conftest import merge_models

pytestmark = pytest.mark.filterwarnings("ignore")

SD35, FLUX = "sd35_medium_tiny", "flux-dev-diffusers"
PLOT = ["Nothing", "", "Nothing", "", True, False, False, 0]  # Y, Z, legend, keep seeds, sub grids, margin


@pytest.fixture
def data_dir(tmp_path, tiny_models, sd3_models, flux_models):
    merge_models(tmp_path / "models", tiny_models, sd3_models)
    flux = f"Stable-diffusion/{FLUX}"  # self-contained (the split FLUX parts would clash with SD 3's)
    shutil.copytree(flux_models / flux, tmp_path / "models" / flux)
    return tmp_path


def _plot(client, model: str, args: list, **body):
    r = client.post(
        "/sdapi/v1/txt2img",
        json={
            "prompt": "a blue square",
            "steps": 3,
            "width": 64,
            "height": 64,
            "seed": 11,
            "script_name": "X/Y/Z plot",
            "script_args": args,
            "override_settings": {"sd_model_checkpoint": model},
            **body,
        },
    )
    return r


def _cells(r) -> tuple[list[np.ndarray], list[str]]:
    assert r.status_code == 200, r.text[:500]
    out = r.json()
    info = json.loads(out["info"])
    first = info["index_of_first_image"]
    images = [np.asarray(Image.open(io.BytesIO(base64.b64decode(b)))) for b in out["images"][first:]]
    return images, info["infotexts"][first:]


def test_flux_distilled_cfg_and_shift_axes(client):
    args = ["Distilled CFG Scale", "2, 6", "Shift", "1, 3", *PLOT[2:]]
    images, texts = _cells(_plot(client, FLUX, args, cfg_scale=1))
    assert len(images) == 4
    for i, (x, y) in enumerate([(2, 1), (6, 1), (2, 3), (6, 3)]):  # x fastest, as A1111
        assert f"Distilled CFG Scale: {x}," in texts[i] and f"Shift: {y}" in texts[i], texts[i]
    assert len({im.tobytes() for im in images}) == 4  # every cell its own pixels


def test_sd35_slg_scale_axis(client):
    on = {"slg_layers": "1", "slg_start": 0.0, "slg_end": 1.0, "cfg_scale": 4}
    images, texts = _cells(_plot(client, SD35, ["SLG scale", "0, 3", *PLOT], **on))
    assert len(images) == 2 and not np.array_equal(images[0], images[1])
    assert "SLG" not in texts[0] and "SLG scale: 3, SLG layers: 1," in texts[1]


@pytest.mark.parametrize("axis", ["Distilled CFG Scale", "SLG scale", "Shift"])
def test_hostile_axis_values_are_422_before_queueing(client, app, axis):
    before = len(app.history.list(limit=1000))
    for bad in ("nan", "inf", "-inf", "1e9", "-1", "1-1000000000", "0-1 [100000]", "../3", "/etc/passwd"):
        r = _plot(client, FLUX, [axis, bad, *PLOT], cfg_scale=1)
        assert r.status_code == 422 and r.json(), (axis, bad, r.status_code, r.text[:200])
    assert len(app.history.list(limit=1000)) == before  # nothing was queued
