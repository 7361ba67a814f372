"""Issue #16 items 3 and 16: the cost guard refuses, before anything is queued, a job whose work, batch memory or
grid is over the limits (X/Y/Z plots included, counted before any list of cells is built), on the A1111 API, the
async jobs API and the UI's entry point; `override_settings` for samples_format and outdir_* are applied per job
(or refused), never silently ignored."""

from __future__ import annotations

import os
import time

import pytest
import requests
from PIL import Image

from tests.api.conftest import wait_idle
from webui.errors import InvalidRequest

XYZ = "x/y/z plot"  # A1111 clients' spelling; titles match case-insensitively


def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _snapshot(app) -> tuple[int, set[str]]:
    files = {str(p) for p in app.paths.data_dir.rglob("*.*") if "outputs" in p.parts or "custom" in str(p)}
    return len(app.history.list(limit=1000)), files


@pytest.fixture
def server(api_server):
    wait_idle(api_server.app)
    yield api_server
    wait_idle(api_server.app)


def _refused(r: requests.Response, *words: str) -> dict:
    assert r.status_code == 422, r.text[:400]
    body = r.json()
    assert {"error", "detail"} <= set(body), body
    for w in words:
        assert w in body["detail"], body["detail"]
    return body


TOO_COSTLY = {
    "work": ({"n_iter": 1000, "batch_size": 64, "steps": 1000, "width": 64, "height": 64}, "max_job_megapixel_steps"),
    "batch memory": ({"batch_size": 64, "width": 2048, "height": 2048, "steps": 1}, "max_batch_pixels"),
    "hires size": (
        {"width": 2048, "height": 2048, "enable_hr": True, "hr_scale": 4, "steps": 1},
        "max_generation_pixels",
    ),
    "hires work": (
        {
            "width": 512,
            "height": 512,
            "enable_hr": True,
            "hr_scale": 2,
            "hr_second_pass_steps": 1000,
            "steps": 1000,
            "n_iter": 100,
        },
        "max_job_megapixel_steps",
    ),
    "grid": (
        {"batch_size": 8, "n_iter": 1000, "width": 256, "height": 256, "steps": 1, "save_images": True},
        "img_max_size_mp",
    ),
}


@pytest.mark.parametrize("case", list(TOO_COSTLY))
def test_a_job_over_the_cost_limits_is_refused_before_it_is_queued(server, case):
    fields, words = TOO_COSTLY[case]
    app = server.app
    before = _snapshot(app)
    t0 = time.monotonic()
    body = {"prompt": "x", **fields}
    _refused(requests.post(f"{server.url}/sdapi/v1/txt2img", json=body, timeout=30), words)
    r = requests.post(f"{server.url}/easel/v1/jobs", json={"kind": "txt2img", "params": body}, timeout=30)
    _refused(r, words)  # a 422, not a 202 for a job that fails later
    assert time.monotonic() - t0 < 5
    assert _snapshot(app) == before and app.jobs.current is None and not app.jobs.queued()


def test_the_same_job_within_the_limits_runs(server):
    r = requests.post(
        f"{server.url}/sdapi/v1/txt2img",
        json={"prompt": "x", "batch_size": 2, "n_iter": 2, "width": 32, "height": 32, "steps": 1},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    assert len(r.json()["images"]) == 4


@pytest.mark.parametrize(
    "args",
    [
        ["Steps", "1-10 [5000000]"],  # the request: five million cells
        ["Seed", "1-1000000000"],
        ["CFG Scale", "1-2 (+0.0000000001)"],
        ["Seed", "1-20", "Steps", "1-20"],  # 400 cells, each axis allowed alone
        ["Prompt S/R", ",".join(["x"] * 300)],
    ],
)
def test_xyz_plot_cells_are_capped_before_they_are_built(server, args):
    app = server.app
    before, rss = _snapshot(app), _rss_mb()
    t0 = time.monotonic()
    body = {"prompt": "x", "steps": 1, "width": 32, "height": 32, "script_name": XYZ, "script_args": args}
    _refused(requests.post(f"{server.url}/sdapi/v1/txt2img", json=body, timeout=30), "xyz_max_cells")
    _refused(
        requests.post(f"{server.url}/easel/v1/jobs", json={"kind": "txt2img", "params": body}, timeout=30),
        "xyz_max_cells",
    )
    assert time.monotonic() - t0 < 5
    assert _rss_mb() - rss < 200  # no list of millions was built
    assert _snapshot(app) == before
    assert requests.get(f"{server.url}/sdapi/v1/progress", timeout=10).status_code == 200


def test_xyz_plot_grid_size_and_total_work_are_checked(server):
    base = {"prompt": "x", "steps": 1, "script_name": XYZ}
    # 64 cells of 2048² (each allowed alone): a 268-megapixel grid, over img_max_size_mp 200
    r = requests.post(
        f"{server.url}/sdapi/v1/txt2img",
        json={**base, "width": 2048, "height": 2048, "script_args": ["Seed", "1-8", "Steps", "1-8"]},
        timeout=30,
    )
    _refused(r, "img_max_size_mp")
    # 200 cells of 1000 steps at 512²: each cell fine, the job 52000 megapixel-steps
    r = requests.post(
        f"{server.url}/sdapi/v1/txt2img",
        json={**base, "width": 512, "height": 512, "steps": 1000, "script_args": ["Seed", "1-200"]},
        timeout=30,
    )
    _refused(r, "max_job_megapixel_steps", "200 cells")
    # a cell's own request is checked like any request: Size axis beyond max_generation_pixels
    r = requests.post(
        f"{server.url}/sdapi/v1/txt2img",
        json={**base, "width": 32, "height": 32, "script_args": ["Size", "32x32, 4096x4096"]},
        timeout=30,
    )
    _refused(r, "max_generation_pixels")


def test_xyz_plot_within_the_limits_still_runs(server):
    r = requests.post(
        f"{server.url}/sdapi/v1/txt2img",
        json={
            "prompt": "x",
            "steps": 1,
            "width": 32,
            "height": 32,
            "script_name": XYZ,
            "script_args": ["Seed", "1-2", "Steps", "1-2"],
        },
        timeout=120,
    )
    assert r.status_code == 200, r.text
    assert len(r.json()["images"]) == 5  # the grid and four cells


def test_the_ui_entry_point_is_guarded_too(server):
    """The UI submits through Application.submit_txt2img(from_api=False): the same guard, before queueing."""
    from webui.generation.requests import Txt2ImgRequest

    app = server.app
    before = _snapshot(app)
    with pytest.raises(InvalidRequest, match="xyz_max_cells"):
        app.submit_txt2img(
            Txt2ImgRequest(
                prompt="x",
                steps=1,
                width=32,
                height=32,
                script_name="X/Y/Z plot",
                script_args={"x_type": "Steps", "x_values": "1-10 [5000000]"},
            ),
            from_api=False,
        )
    with pytest.raises(InvalidRequest, match="max_job_megapixel_steps"):
        app.submit_txt2img(
            Txt2ImgRequest(prompt="x", n_iter=1000, batch_size=64, steps=1000, width=64, height=64), from_api=False
        )
    assert _snapshot(app) == before


def test_the_limits_are_options_with_bounds(server):
    url = f"{server.url}/sdapi/v1/options"
    opts = requests.get(url, timeout=10).json()
    assert (
        opts["max_job_megapixel_steps"],
        opts["max_batch_pixels"],
        opts["img_max_size_mp"],
        opts["xyz_max_cells"],
    ) == (20000, 64 * 512 * 512, 200, 256)
    for key, value in (
        ("max_job_megapixel_steps", 10**12),
        ("max_job_megapixel_steps", 0),
        ("xyz_max_cells", 10**9),
        ("img_max_size_mp", -1),
        ("max_batch_pixels", 1e30),
    ):
        r = requests.post(url, json={key: value}, timeout=10)
        assert r.status_code == 422, (key, value, r.text)
    try:
        assert requests.post(url, json={"xyz_max_cells": 3}, timeout=10).status_code == 200
        r = requests.post(
            f"{server.url}/sdapi/v1/txt2img",
            json={
                "prompt": "x",
                "steps": 1,
                "width": 32,
                "height": 32,
                "script_name": XYZ,
                "script_args": ["Seed", "1-2", "Steps", "1-2"],
            },
            timeout=30,
        )
        _refused(r, "xyz_max_cells")
    finally:
        requests.post(url, json={"xyz_max_cells": 256}, timeout=10)


# --- item 16: override_settings for saving ------------------------------------------------------------------------


def test_override_samples_format_and_outdir_apply_to_that_job_only(server):
    app = server.app
    body = {
        "prompt": "x",
        "steps": 1,
        "width": 32,
        "height": 32,
        "seed": 5,
        "override_settings": {"samples_format": "jpg", "outdir_txt2img_samples": "custom-out/t2i"},
    }
    r = requests.post(f"{server.url}/easel/v1/jobs", json={"kind": "txt2img", "params": body}, timeout=30)
    assert r.status_code == 202, r.text
    job = r.json()["id"]
    wait_idle(app)
    paths = requests.get(f"{server.url}/easel/v1/jobs/{job}", timeout=10).json()["result"]["images"]
    assert len(paths) == 1 and paths[0].endswith(".jpg"), paths
    path = app.paths.data_dir.joinpath(paths[0]) if not os.path.isabs(paths[0]) else paths[0]
    assert str(path).startswith(str(app.paths.data_dir / "custom-out" / "t2i")), path
    with Image.open(path) as im:
        assert im.format == "JPEG"
    # the next job is back to the persisted options
    r = requests.post(
        f"{server.url}/easel/v1/jobs", json={"kind": "txt2img", "params": {**body, "override_settings": {}}}, timeout=30
    )
    job = r.json()["id"]
    wait_idle(app)
    paths = requests.get(f"{server.url}/easel/v1/jobs/{job}", timeout=10).json()["result"]["images"]
    assert paths[0].endswith(".png") and "custom-out" not in paths[0], paths
    assert app.options.get("samples_format") == "png"


def test_override_outdir_is_refused_when_exposed_and_the_format_still_applies(make_app, tmp_path):
    from fastapi.testclient import TestClient

    from webui.api.server import build_fastapi

    app = make_app("--listen", "--nowebui", "--api-auth", "u:pw-123456")
    outside = tmp_path / "elsewhere"
    with TestClient(build_fastapi(app), base_url="http://127.0.0.1") as c:
        c.auth = ("u", "pw-123456")
        for target in (str(outside), "../escape"):
            r = c.post(
                "/sdapi/v1/txt2img",
                json={
                    "prompt": "x",
                    "steps": 1,
                    "width": 32,
                    "height": 32,
                    "save_images": True,
                    "override_settings": {"outdir_txt2img_samples": target},
                },
            )
            assert r.status_code in (403, 422), r.text
            assert {"error", "detail"} <= set(r.json())
        assert not outside.exists() and not (app.paths.data_dir.parent / "escape").exists()
        assert not app.history.list(limit=10)
        r = c.post(
            "/sdapi/v1/txt2img",
            json={
                "prompt": "x",
                "steps": 1,
                "width": 32,
                "height": 32,
                "save_images": True,
                "override_settings": {"samples_format": "webp"},
            },
        )
        assert r.status_code == 200, r.text
    saved = [p for p in (app.paths.data_dir / "outputs").rglob("*") if p.is_file()]
    assert [p.suffix for p in saved] == [".webp"], saved


def test_prompts_from_file_lines_count_in_the_job_cost(server):
    """Each line is a generation: their sum is held to the work budget before the job is queued."""
    app = server.app
    before = _snapshot(app)
    lines = "\n".join(f'--prompt "line {i}" --steps 1000 --width 512 --height 512' for i in range(100))
    r = requests.post(
        f"{server.url}/sdapi/v1/txt2img",
        json={
            "prompt": "x",
            "steps": 1,
            "script_name": "prompts from file or textbox",
            "script_args": {"prompt_txt": lines},
        },
        timeout=30,
    )
    _refused(r, "max_job_megapixel_steps", "100 cells")
    r = requests.post(
        f"{server.url}/sdapi/v1/txt2img",
        json={
            "prompt": "x",
            "steps": 1,
            "script_name": "prompts from file or textbox",
            "script_args": {"prompt_txt": "a\n" * 20000},
        },
        timeout=30,
    )
    _refused(r, "10000 lines")
    assert _snapshot(app) == before
