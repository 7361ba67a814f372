"""Application.prepare (#17 item 2): the one request preparation of the UI, /sdapi/v1 and /easel/v1/jobs."""

from __future__ import annotations

import pytest

from webui.errors import InvalidRequest
from webui.generation.prepare import apply_infotext
from webui.generation.requests import Img2ImgRequest, Txt2ImgRequest, hires_size, latent_floor

TEXT = "a cat\nNegative prompt: a dog\nSteps: 3, Sampler: Euler, CFG scale: 5, Seed: 7, Size: 64x64"


def test_infotext_fills_what_was_not_set_and_fields_set_says_so() -> None:
    req = apply_infotext(Txt2ImgRequest(infotext=TEXT, steps=2))
    assert (req.prompt, req.negative_prompt, req.steps, req.seed, req.cfg_scale) == ("a cat", "a dog", 2, 7, 5.0)
    assert req.model_fields_set == {
        "infotext",
        "steps",
        "prompt",
        "negative_prompt",
        "sampler_name",
        "cfg_scale",
        "seed",
        "width",
        "height",
    }
    same = apply_infotext(req)  # a prepared request prepares to the same request
    assert same.model_dump() == req.model_dump() and same.model_fields_set == req.model_fields_set
    with pytest.raises(InvalidRequest, match="infotext gives an invalid value for steps"):
        apply_infotext(Txt2ImgRequest(infotext="x\nSteps: 100000, Sampler: Euler, CFG scale: 5, Seed: 7"))


def test_the_ui_path_is_prepared_like_the_api(app) -> None:
    """from_api=False is the UI's submit: the same infotext fill and the same script checks as the routes."""
    with pytest.raises(InvalidRequest, match="Script 'nope' not found"):
        app.submit_txt2img(Txt2ImgRequest(prompt="x", script_name="nope"), from_api=False)
    with pytest.raises(InvalidRequest, match="always on script Nope not found"):
        app.submit_txt2img(Txt2ImgRequest(prompt="x", alwayson_scripts={"Nope": {"args": []}}), from_api=False)
    with pytest.raises(InvalidRequest, match="Script 'nope' not found"):
        app.prepare(Img2ImgRequest(prompt="x", script_name="nope"), "img2img")
    job = app.submit_txt2img(Txt2ImgRequest(infotext=TEXT), from_api=False)
    result = app.jobs.wait(job)
    assert "Steps: 3" in result.infotexts[0] and "Seed: 7" in result.infotexts[0] and job.params["prompt"] == "a cat"


def test_sizes_floor_to_the_latent_grid_in_one_place() -> None:
    assert [latent_floor(v) for v in (1, 8, 15, 64, 71)] == [8, 8, 8, 64, 64]
    assert Txt2ImgRequest(width=71, height=9).width == 64 and Txt2ImgRequest(width=71, height=9).height == 8
    assert hires_size(64, 64, 1.9) == (120, 120) and hires_size(64, 48, 2, resize_x=100) == (96, 72)
    with pytest.raises(InvalidRequest):
        hires_size(64, 64, 0)
