"""Forge's flow-matching sampling names for FLUX.1 / SD 3.5: "Euler" with the "Simple", "Normal" and "Beta" schedule
types, the flow_shift setting and its "Shift" infotext field, pasted back; hostile values for the new fields."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from tests.families.conftest import merge_models
from webui.generation.flow_sampling import make_scheduler
from webui.models.probe import load_template

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture
def data_dir(tmp_path, tiny_models, flux_models):
    merge_models(tmp_path / "models", tiny_models, flux_models)
    return tmp_path


def _sigmas(schedule: str, shift: float = 0.0, steps: int = 6) -> list[float]:
    sched, kw = make_scheduler(
        load_template("sd3-medium", "scheduler", "scheduler_config.json"), schedule, shift, steps
    )
    import numpy as np_

    sched.set_timesteps(steps, sigmas=kw.get("sigmas", np_.linspace(1.0, 1 / steps, steps).tolist()))
    return [round(float(s), 4) for s in sched.sigmas]


def test_schedule_types_and_shift_give_their_own_sigmas():
    simple, normal, beta = _sigmas("Simple"), _sigmas("Normal"), _sigmas("Beta")
    assert simple[0] == normal[0] == beta[0] == 1.0 and simple[-1] == normal[-1] == beta[-1] == 0.0
    assert len({tuple(simple), tuple(normal), tuple(beta)}) == 3
    assert normal[-2] < simple[-2]  # Normal runs down to the schedule's end (1/1000 before the shift)
    # SD 3's own shift is 3: sigma' = 3s / (1 + 2s); a flow_shift of 1 leaves the spacing as it is
    assert simple[1] == round(3 * (5 / 6) / (1 + 2 * (5 / 6)), 4)
    assert _sigmas("Simple", shift=1.0)[1] == round(5 / 6, 4)


def _run(client, body: dict, **settings):
    payload = {
        "prompt": "a red circle",
        "steps": 3,
        "width": 32,
        "height": 32,
        "seed": 9,
        "cfg_scale": 1,
        **body,
        "override_settings": {"sd_model_checkpoint": "flux1-dev-tiny", **settings},
    }
    r = client.post("/sdapi/v1/txt2img", json=payload)
    assert r.status_code == 200, r.text
    data = r.json()
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data["images"][0])))), json.loads(data["info"])


def test_schedule_types_shift_infotext_and_paste_back(client):
    images = {}
    for schedule in ("Simple", "Normal", "Beta"):
        images[schedule], info = _run(client, {"sampler_name": "Euler", "scheduler": schedule})
        assert f"Sampler: Euler, Schedule type: {schedule}," in info["infotexts"][0]
        assert "Shift" not in info["infotexts"][0]
    assert not np.array_equal(images["Simple"], images["Normal"])
    assert not np.array_equal(images["Simple"], images["Beta"])
    automatic, _ = _run(client, {"scheduler": "Automatic"})
    assert np.array_equal(automatic, images["Simple"])
    shifted, info = _run(client, {"scheduler": "Beta"}, flow_shift=3.0)
    text = info["infotexts"][0]
    assert "Schedule type: Beta" in text and "Shift: 3," in text and not np.array_equal(shifted, images["Beta"])
    pasted, info2 = _run(client, {"infotext": text})  # Shift → override_settings flow_shift, as Clip skip
    assert np.array_equal(pasted, shifted) and info2["infotexts"][0] == text
    again, _ = _run(client, {"scheduler": "Beta"})  # an override, not kept
    assert np.array_equal(again, images["Beta"])


def test_hostile_values_for_the_new_fields(client):
    for value in ("NaN", "Infinity", "-1", "1e9", '"abc"', "null", "[3]"):
        r = client.post(
            "/sdapi/v1/options", content='{"flow_shift": %s}' % value, headers={"content-type": "application/json"}
        )
        assert 400 <= r.status_code < 500 and r.headers["content-type"].startswith("application/json"), value
    assert client.get("/sdapi/v1/options").json()["flow_shift"] == 0.0
    base = {
        "prompt": "x",
        "steps": 1,
        "width": 32,
        "height": 32,
        "override_settings": {"sd_model_checkpoint": "flux1-dev-tiny"},
    }
    for field, value in (
        ("distilled_cfg_scale", "NaN"),
        ("distilled_cfg_scale", "Infinity"),
        ("distilled_cfg_scale", "1e9"),
        ("distilled_cfg_scale", "-1"),
        ("scheduler", '"Karras"'),
        ("sampler_name", '"../../etc/passwd"'),
        ("scheduler", '"Beta\\u0000"'),
    ):
        raw = json.dumps(base)[:-1] + f', "{field}": {value}}}'
        r = client.post("/sdapi/v1/txt2img", content=raw, headers={"content-type": "application/json"})
        assert 400 <= r.status_code < 500 and r.headers["content-type"].startswith("application/json"), (field, r.text)
    r = client.post(
        "/sdapi/v1/txt2img",
        json={**base, "override_settings": {**base["override_settings"], "flow_shift": float("1e9")}},
    )
    assert 400 <= r.status_code < 500
    assert client.get("/sdapi/v1/options").status_code == 200
