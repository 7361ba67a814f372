"""Issue #16 item 2: every number a remote client can send is bounded and finite. NaN, ±Infinity, 1e309, huge,
negative and 2**64 values are a 422 with the JSON error body — never a 500 — on /sdapi/v1 and /easel/v1/jobs,
nothing is queued or written for a refused request, and the server keeps answering."""

from __future__ import annotations

import json
import time

import pytest
import requests

from tests.api.conftest import png_base64, wait_idle

BAD_LITERALS = ("NaN", "Infinity", "-Infinity", "1e309", "-1e309")


def post_raw(url: str, body: str, timeout: float = 30) -> requests.Response:
    """Send `body` exactly as written (requests' json= refuses NaN, so it couldn't send the attack)."""
    return requests.post(url, data=body.encode(), headers={"Content-Type": "application/json"}, timeout=timeout)


def assert_refused(r: requests.Response, what: str) -> None:
    assert r.status_code == 422, f"{what}: {r.status_code} {r.text[:300]}"
    body = r.json()
    assert {"error", "detail"} <= set(body) and body["detail"], f"{what}: {body}"


@pytest.fixture
def server(api_server):
    wait_idle(api_server.app)
    yield api_server
    wait_idle(api_server.app)


def _snapshot(app) -> tuple[int, set[str]]:
    rows = app.history.list(limit=1000)
    files = {str(p) for p in (app.paths.data_dir / "outputs").rglob("*") if p.is_file()}
    return len(rows), files


# field → values that must be refused (besides the non-finite literals, refused for every field)
TXT2IMG_BAD: dict[str, list] = {
    "steps": [0, 10**9, -5, 2**64],
    "cfg_scale": [-1, 10**9],
    "width": [10**9, -64, 2**64],
    "height": [10**9, 0],
    "batch_size": [0, 10**9],
    "n_iter": [0, 10**9],
    "seed": [2**64, -2, -(10**30), 10**40],
    "subseed": [2**64, -(2**70)],
    "subseed_strength": [-0.1, 1.5, 10**9],
    "seed_resize_from_w": [10**9, -7],
    "seed_resize_from_h": [10**9, -7],
    "denoising_strength": [-0.5, 10**9],
    "hr_scale": [0, -2, 10**9],
    "hr_second_pass_steps": [10**9, -1, 2**64],
    "hr_resize_x": [10**9, -8],
    "hr_resize_y": [10**9, -8],
    "firstphase_width": [10**9],
    "firstphase_height": [-1],
    "eta": [-1, 10**9],
    "s_churn": [-1, 10**9],
    "s_noise": [10**9],
    "s_tmin": [-3],
    "s_tmax": [10**9],
    "s_min_uncond": [-1],
    "refiner_switch_at": [2],
}
IMG2IMG_BAD: dict[str, list] = {
    "denoising_strength": [1.0001, -0.1],
    "image_cfg_scale": [-1, 10**9],
    "initial_noise_multiplier": [-1, 10**9],
    "mask_blur": [-1, 10**9],
    "mask_blur_x": [10**9],
    "inpaint_full_res_padding": [10**9],
    "resize_mode": [9],
}


def _cases(bad: dict[str, list]):
    for field, values in bad.items():
        for v in [*BAD_LITERALS, *values]:
            yield field, v if isinstance(v, str) else json.dumps(v)


def test_every_bad_number_is_a_422_and_nothing_runs(server):
    app = server.app
    before = _snapshot(app)
    t0 = time.monotonic()
    failures = []
    base = {"prompt": "x", "steps": 1, "width": 32, "height": 32, "enable_hr": True}
    for field, literal in _cases(TXT2IMG_BAD):
        body = json.dumps(base)[:-1] + f', "{field}": {literal}}}'
        for url in (f"{server.url}/sdapi/v1/txt2img", None):
            if url is None:  # the async jobs API: the same bounds inside "params"
                r = post_raw(f"{server.url}/easel/v1/jobs", f'{{"kind": "txt2img", "params": {body}}}')
            else:
                r = post_raw(url, body)
            if r.status_code != 422 or not {"error", "detail"} <= set(r.json()):
                failures.append((url or "jobs", field, literal, r.status_code, r.text[:200]))
    image = png_base64((32, 32))
    for field, literal in _cases(IMG2IMG_BAD):
        body = json.dumps({"prompt": "x", "steps": 1, "init_images": [image]})[:-1] + f', "{field}": {literal}}}'
        r = post_raw(f"{server.url}/sdapi/v1/img2img", body)
        if r.status_code != 422:
            failures.append(("img2img", field, literal, r.status_code, r.text[:200]))
    assert not failures, failures
    assert time.monotonic() - t0 < 60  # refused at the edge: no generation ran
    assert _snapshot(app) == before  # no history row, no file
    assert requests.get(f"{server.url}/sdapi/v1/progress", timeout=10).status_code == 200


def test_nan_is_refused_anywhere_in_the_body(server):
    """Untyped places (override_settings, script_args, alwayson_scripts, nested lists) are checked too, and the
    error names the place."""
    before = _snapshot(server.app)
    for body in (
        '{"prompt": "x", "override_settings": {"eta_ancestral": NaN}}',
        '{"prompt": "x", "script_args": [1, [2, -Infinity]]}',
        '{"prompt": "x", "alwayson_scripts": {"controlnet": {"args": [{"weight": 1e309}]}}}',
        '{"prompt": "x", "comments": {"a": Infinity}}',
    ):
        r = post_raw(f"{server.url}/sdapi/v1/txt2img", body)
        assert_refused(r, body)
        assert r.json()["errors"][0]["loc"][0] == "body"
    r = post_raw(f"{server.url}/sdapi/v1/txt2img", '{"prompt": "x", "override_settings": {"eta_ancestral": NaN}}')
    assert "override_settings.eta_ancestral" in r.json()["detail"]
    assert _snapshot(server.app) == before


def test_validation_errors_with_non_finite_input_serialise(server):
    """The 500 of the issue: a validation error echoing a NaN input could not be written as JSON. The handler's
    body is plain JSON even when the input it echoes isn't finite (here through the typed model directly)."""
    from fastapi.exceptions import RequestValidationError
    from pydantic import ValidationError

    from webui.api.errors import json_safe
    from webui.generation.requests import Txt2ImgRequest

    with pytest.raises(ValidationError) as e:
        Txt2ImgRequest.model_validate({"cfg_scale": float("nan"), "hr_scale": float("inf")})
    safe = json_safe(RequestValidationError(e.value.errors()).errors())
    json.dumps(safe, allow_nan=False)  # raises if anything non-finite is left
    assert {tuple(err["loc"]) for err in safe} == {("cfg_scale",), ("hr_scale",)}


def test_hires_with_a_billion_steps_is_refused_at_once(server):
    """The OOM of the issue: enable_hr with hr_second_pass_steps 1e9 grew the process to 16 GB."""
    before = _snapshot(server.app)
    t0 = time.monotonic()
    r = requests.post(
        f"{server.url}/sdapi/v1/txt2img",
        json={"prompt": "x", "steps": 1, "width": 32, "height": 32, "enable_hr": True, "hr_second_pass_steps": 10**9},
        timeout=30,
    )
    assert_refused(r, "hr_second_pass_steps")
    assert "hr_second_pass_steps" in r.json()["detail"]
    assert time.monotonic() - t0 < 5
    assert _snapshot(server.app) == before


def test_the_largest_seed_generates(server):
    """The seed bound is what generation can do: the largest accepted seed (with a batch, so seed + index goes past
    2**63) makes images."""
    from webui.generation.requests import MAX_SEED

    r = requests.post(
        f"{server.url}/sdapi/v1/txt2img",
        json={
            "prompt": "x",
            "steps": 1,
            "width": 32,
            "height": 32,
            "seed": MAX_SEED,
            "subseed": MAX_SEED,
            "subseed_strength": 0,
            "batch_size": 2,
        },
        timeout=120,
    )
    assert r.status_code == 200, r.text
    info = json.loads(r.json()["info"])
    assert info["seed"] == MAX_SEED and len(r.json()["images"]) >= 2


def test_extras_numbers_are_bounded(server):
    image = png_base64((16, 16))
    for field, literal in (
        ("upscaling_resize", "NaN"),
        ("upscaling_resize", "1e309"),
        ("upscaling_resize", "1e9"),
        ("upscaling_resize", "0"),
        ("upscaling_resize_w", "1000000000"),
        ("upscaling_resize_h", "-4"),
        ("extras_upscaler_2_visibility", "Infinity"),
    ):
        body = json.dumps({"image": image, "resize_mode": 1})[:-1] + f', "{field}": {literal}}}'
        assert_refused(post_raw(f"{server.url}/sdapi/v1/extra-single-image", body), f"{field}={literal}")


def test_training_numbers_are_bounded(server, tmp_path):
    """/easel/v1/train/lora: steps, batch, resolution, rank, learning rate, seed, ... refused before anything is
    read, queued or written."""
    before = _snapshot(server.app)
    loras = set(server.app.paths.lora_dir.glob("*")) if server.app.paths.lora_dir.exists() else set()
    base = {"name": "bounds", "dataset_dir": str(tmp_path)}
    cases = {
        "steps": [0, 10**9, "NaN"],
        "batch_size": [0, 10**6],
        "resolution": [8, 10**6, "1e309"],
        "rank": [0, 10**6],
        "learning_rate": [0, -1, 10**9, "NaN", "Infinity"],
        "alpha": [-1, "NaN"],
        "seed": [2**64, -2],
        "save_every": [10**12, -1],
        "sample_every": [-1],
    }
    for field, values in cases.items():
        for value in values:
            literal = value if isinstance(value, str) else json.dumps(value)
            body = json.dumps(base)[:-1] + f', "{field}": {literal}}}'
            r = post_raw(f"{server.url}/easel/v1/train/lora", body)
            assert_refused(r, f"{field}={literal}")
            assert field in r.text, (field, r.text[:300])
    r = post_raw(f"{server.url}/easel/v1/train/lora", json.dumps({**base, "resolution": 4096, "batch_size": 2}))
    assert_refused(r, "batch × resolution²")
    assert _snapshot(server.app) == before
    assert (set(server.app.paths.lora_dir.glob("*")) if server.app.paths.lora_dir.exists() else set()) == loras


def test_nan_without_a_content_type_is_refused_too(server):
    r = requests.post(f"{server.url}/sdapi/v1/txt2img", data=b'{"prompt": "x", "cfg_scale": NaN}', timeout=30)
    assert r.status_code == 422, r.text[:300]
    assert {"error", "detail"} <= set(r.json())
