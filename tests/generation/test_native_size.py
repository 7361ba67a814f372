"""The checkpoint's native size is read in one place (webui/generation/native.py): the UI's sliders, the cost guard,
the time estimate and the plan agree on which checkpoint a job runs on and what an unset width/height becomes."""

import pytest

from webui.errors import InvalidRequest
from webui.generation.estimate import StepTimer, estimate_request
from webui.generation.native import NO_MODEL, UNKNOWN_NATIVE, model_for_job, native_size
from webui.generation.requests import Txt2ImgRequest


def test_the_job_runs_on_the_active_model_when_named_by_any_catalog_name(app) -> None:
    active = app.models.active
    other = next(i for i in app.catalog.list() if i.path != active.info.path)
    find = app.catalog.find
    assert model_for_job(active, "", find) is active and model_for_job(active, None, find) is active
    assert model_for_job(active, active.info.title, find) is active
    assert model_for_job(active, active.info.name, find) is active  # the file name, as a request may give it
    assert model_for_job(active, other.title, find) is None  # another checkpoint: its size is known after loading
    assert model_for_job(active, "no-such-model.safetensors", find) is None
    assert model_for_job(None, active.info.title, find) is None


def test_native_size_of_a_model_and_without_one(app) -> None:
    active = app.models.active
    assert native_size(active) == active.probe.native_size == 64  # the tiny test models' 8×8 latents × 8
    assert native_size(None) == NO_MODEL == 512 and native_size(None, unknown=UNKNOWN_NATIVE) == 1024


def test_estimate_and_cost_guard_use_the_same_checkpoint_rule(app) -> None:
    active = app.models.active
    other = next(i for i in app.catalog.list() if i.path != active.info.path)
    timer = StepTimer()
    timer.record(active.info.title, [(64 * 64, 0.5)])
    req = Txt2ImgRequest(prompt="x", steps=2)
    by_name = estimate_request(timer, req, {"sd_model_checkpoint": active.info.name}.get, active, app.catalog.find)
    by_title = estimate_request(timer, req, {"sd_model_checkpoint": ""}.get, active, app.catalog.find)
    assert by_name[0] == by_title[0] == pytest.approx(1.0)  # 2 steps at 0.5 s each, at the native 64×64
    assert estimate_request(timer, req, {"sd_model_checkpoint": other.title}.get, active, app.catalog.find)[0] is None
    # the guard: an unset size on another checkpoint counts as 1024², over a 64² limit; the active one by file name
    # counts as its native 64² and passes the guard
    app.set_options({"max_generation_pixels": 64 * 64})
    with pytest.raises(InvalidRequest, match="over the limit"):
        app.submit_txt2img(
            Txt2ImgRequest(prompt="x", steps=1, override_settings={"sd_model_checkpoint": other.title}), from_api=True
        )
    job = app.submit_txt2img(
        Txt2ImgRequest(prompt="x", steps=1, override_settings={"sd_model_checkpoint": active.info.name}), from_api=True
    )
    assert app.jobs.wait(job, timeout=60).images[0].size == (64, 64)
