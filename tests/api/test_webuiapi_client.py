"""The A1111 workflow through the real `webuiapi` PyPI client: models, samplers, options and checkpoint switch,
txt2img with the infotext read back by `sd-parsers`, png-info, progress and interrupt."""

from __future__ import annotations

import base64
import threading
import time
from pathlib import Path

import pytest
import requests
import webuiapi
from sd_parsers import ParserManager

from tests.api.conftest import wait_idle, wait_until


@pytest.fixture
def api(api_server):
    wait_idle(api_server.app)
    yield webuiapi.WebUIApi(host="127.0.0.1", port=api_server.port, sampler="Euler a", steps=4)
    wait_idle(api_server.app)


def test_models_samplers_and_checkpoint_switch(api, api_server):
    titles = api.util_get_model_names()
    assert any(t.startswith("tiny-a.safetensors [") for t in titles)
    b_title = next(t for t in titles if t.startswith("sub/tiny-b.safetensors ["))
    model = next(m for m in api.get_sd_models() if m["title"] == b_title)
    assert model["model_name"] == "sub_tiny-b" and len(model["hash"]) == 10
    assert model["filename"].endswith(".safetensors")
    assert {"Euler a", "DPM++ 2M"} <= set(api.util_get_sampler_names())
    before = api.get_options()["sd_model_checkpoint"]
    try:
        assert api.set_options({"sd_model_checkpoint": b_title}) is None
        assert api.util_get_current_model() == b_title
        assert api_server.app.models.active.info.title == b_title
        r = api.txt2img(prompt="after switch", steps=2, seed=5, width=64, height=64)
        assert "Model: tiny-b," in r.info["infotexts"][0]
        bad = requests.post(f"{api.baseurl}/options", json={"sd_model_checkpoint": "nope.safetensors [0000000000]"})
        assert 400 <= bad.status_code < 500 and bad.json()["detail"]
        assert api.util_get_current_model() == b_title  # a failed switch changes nothing
    finally:
        api.set_options({"sd_model_checkpoint": before})
    assert api.util_get_current_model() == before


def test_txt2img_infotext_reads_back_with_sd_parsers(api, api_server, tmp_path):
    r = api.txt2img(
        prompt="a red circle, (masterpiece:1.2)",
        negative_prompt="blurry",
        steps=4,
        seed=1234,
        width=64,
        height=64,
        save_images=True,
    )
    assert len(r.images) == 1 and r.images[0].size == (64, 64)
    assert r.info["all_seeds"] == [1234] and r.info["prompt"] == "a red circle, (masterpiece:1.2)"
    assert r.parameters["steps"] == 4 and r.parameters["sampler_name"] == "Euler a"
    returned = tmp_path / "returned.png"
    returned.write_bytes(base64.b64decode(r.json["images"][0]))
    saved = sorted((api_server.app.paths.data_dir / "outputs" / "txt2img-images").rglob("*-1234.png"))
    assert saved, "save_images=True must write the image to outputs/txt2img-images/<date>/"
    for file in (returned, saved[-1]):
        info = ParserManager().parse(Path(file))
        assert info is not None, file
        assert info.full_prompt == "a red circle, (masterpiece:1.2)"
        sampler = info.samplers[0]
        assert sampler.name == "Euler a"
        assert sampler.parameters["seed"] == "1234" and sampler.parameters["steps"] == "4"
        assert sampler.negative_prompts[0].value == "blurry"


def test_png_info(api):
    r = api.txt2img(prompt="png info check", steps=2, seed=77, width=64, height=64)
    info = api.png_info(r.images[0])
    assert info.info.startswith("png info check\n")
    parsed = info.json["parameters"]
    assert parsed["Seed"] == "77" and parsed["Steps"] == "2" and parsed["Prompt"] == "png info check"


def test_progress_and_interrupt_of_a_long_job(api, api_server):
    idle = api.get_progress()
    assert idle["progress"] == 0 and idle["state"]["job_count"] == 0
    out: dict = {}

    def long_job():
        t0 = time.time()
        try:
            out["result"] = api.txt2img(prompt="long", steps=1000, seed=3, width=64, height=64)
        except Exception as e:  # reported below
            out["error"] = e
        out["ended"] = time.time()
        out["took"] = out["ended"] - t0

    thread = threading.Thread(target=long_job)
    thread.start()
    progress = wait_until(
        lambda: (lambda p: p if p["state"]["sampling_step"] >= 2 else None)(api.get_progress()), timeout=60
    )
    assert progress["state"]["sampling_steps"] == 1000 and 0 < progress["progress"] < 1
    assert progress["state"]["job_count"] == 1 and progress["eta_relative"] > 0
    assert progress["state"]["job"]  # the job id
    t_interrupt = time.time()
    assert api.interrupt() == {}
    thread.join(30)
    assert not thread.is_alive(), "the interrupted request did not return"
    assert "error" not in out, out.get("error")
    assert out["ended"] - t_interrupt < 5, f"interrupt took {out['ended'] - t_interrupt:.1f} s"
    wait_idle(api_server.app)
    row = api_server.app.history.list(limit=1)[0]
    assert row["status"] == "interrupted" and row["params"]["steps"] == 1000
