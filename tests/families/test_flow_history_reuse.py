"""History → txt2img / img2img carries FLUX's Distilled CFG Scale and SD 3.5's skip-layer guidance back into the
tabs (handlers called directly, on the tiny FLUX model): through the job's infotext, the same mapping as the paste
(also for a JPEG output, whose file has no PNG chunk), and from the stored request of a job that has no infotext."""

from __future__ import annotations

import time

import gradio as gr
import pytest

from tests.families.conftest import merge_models

pytestmark = pytest.mark.filterwarnings("ignore")
FLUX = "flux1-dev-tiny"


@pytest.fixture
def data_dir(tmp_path, flux_models):
    merge_models(tmp_path / "models", flux_models)
    return tmp_path


@pytest.fixture
def setup(make_app):
    from webui.ui.extras_tab import ExtrasTab
    from webui.ui.img2img_tab import Img2ImgTab
    from webui.ui.pnginfo_tab import PngInfoTab
    from webui.ui.quicksettings import Quicksettings
    from webui.ui.sendto import SendTo
    from webui.ui.txt2img_tab import Txt2ImgTab

    app = make_app("--nowebui", "--ckpt", FLUX)
    with gr.Blocks() as demo:
        quick = Quicksettings(app)
        with gr.Tabs() as tabs:
            with gr.Tab("txt2img", id="txt2img"):
                t2i = Txt2ImgTab(app)
            with gr.Tab("img2img", id="img2img"):
                i2i = Img2ImgTab(app)
            with gr.Tab("Extras", id="extras"):
                extras = ExtrasTab(app)
            with gr.Tab("PNG Info", id="pnginfo"):
                png = PngInfoTab(app)
        quick.wire(t2i, i2i)
        send = SendTo(app, tabs, quick, t2i, i2i, extras, png)
        send.wire()
    send.demo = demo
    return app, send


def _values(tab, out: dict) -> dict:
    """{request field: the value the handler set} for the fields it set."""
    got = {}
    for (key, _), comp in zip(tab.FIELDS, tab.field_components):
        upd = out.get(comp)
        if isinstance(upd, dict) and upd.get("__type__") == "update":
            if "value" in upd:
                got[key] = upd["value"]
        elif comp in out:
            got[key] = upd
    return got


def test_history_reuse_carries_distilled_cfg_through_the_infotext_also_from_a_jpeg(setup):
    from webui.generation.requests import Txt2ImgRequest

    app, send = setup
    app.set_options({"samples_format": "jpg"})
    req = Txt2ImgRequest(prompt="a red fox", steps=2, seed=5, width=64, height=64, cfg_scale=1, distilled_cfg_scale=5.5)
    job = app.submit_txt2img(req, from_api=False)
    app.jobs.wait(job)
    stored = app.history.get(job.id)
    assert stored["result"]["images"][0].endswith(".jpg")
    assert "Distilled CFG Scale: 5.5" in stored["result"]["infotexts"][0]

    t2i = _values(send.txt2img, send.history_to_txt2img(job.id))
    assert t2i["distilled_cfg_scale"] == 5.5 and t2i["prompt"] == "a red fox" and t2i["seed"] == 5
    i2i = _values(send.img2img, send.history_to_img2img(job.id))
    assert i2i["distilled_cfg_scale"] == 5.5 and i2i["prompt"] == "a red fox" and i2i["seed"] == 5


def test_history_reuse_of_a_job_without_infotext_carries_its_whole_request(setup):
    """A failed job has no infotext: its stored request gives every field (before: prompt, steps, CFG, seed, size
    and sampler only)."""
    from webui.generation.requests import Txt2ImgRequest

    app, send = setup
    req = Txt2ImgRequest(
        prompt="a castle",
        steps=3,
        seed=9,
        width=64,
        height=64,
        cfg_scale=4,
        distilled_cfg_scale=6.0,
        slg_scale=2.5,
        slg_layers="7, 8",
        slg_start=0.05,
        slg_end=0.3,
        override_settings={"flow_shift": 2.0},
    )
    now = time.time()
    app.history.queued("failed-job", "txt2img", req.model_dump(mode="json"), now)
    app.history.finished("failed-job", "failed", None, "out of memory", now + 1)

    t2i = _values(send.txt2img, send.history_to_txt2img("failed-job"))
    assert t2i["distilled_cfg_scale"] == 6.0 and t2i["seed"] == 9 and t2i["prompt"] == "a castle"
    assert (t2i["slg_scale"], t2i["slg_layers"], t2i["slg_start"], t2i["slg_end"]) == (2.5, "7, 8", 0.05, 0.3)
    assert t2i["enable_hr"] is False and t2i["_seed_extras"] is False
    assert any('"flow_shift"' in v for v in t2i["_overrides"])  # a setting: in "Override settings"


def test_a_send_to_switch_keeps_the_distilled_cfg_the_infotext_named(setup):
    """After Send-to/paste switches the checkpoint, the Distilled CFG update reads no slider value: FLUX.1 Fill's
    default (30 for dev's 3.5, quicksettings.distilled_updates) is for the top bar's switch, not for a pasted value."""
    _app, send = setup
    ids = {c._id for c in send.quick.distilled}
    deps = [d for d in send.demo.fns.values() if ids and {c._id for c in d.outputs} == ids]
    with_values = [d for d in deps if d.inputs]
    assert len(with_values) == 1 and {c._id for c in with_values[0].inputs} == ids  # the top bar's switch only
    assert len(deps) > 1  # Send-to's and paste's switches: visibility only
