"""The built-in scripts through the API: X/Y/Z plot and Prompts from file or textbox."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from tests.extensions.conftest import REPO, pixels, txt2img
from webui.extensions.api import ScriptError


def load_module(path):
    """A built-in extension's script as the host imports it: its folder as a package (webui/extensions/host.py)."""
    from webui.extensions.host import extension_package

    folder = path.parent.parent
    return importlib.import_module(f"{extension_package(folder.name, folder)}.scripts.{path.stem}")


xyz = load_module(REPO / "extensions" / "xyz_grid" / "scripts" / "xyz_grid.py")
pff = load_module(REPO / "extensions" / "prompts_from_file" / "scripts" / "prompts_from_file.py")


def test_value_lists_and_ranges():
    assert xyz.expand_numbers(xyz.split_values("1-5"), int) == [1, 2, 3, 4, 5]
    assert xyz.expand_numbers(xyz.split_values("1-10 (+2)"), int) == [1, 3, 5, 7, 9]
    assert xyz.expand_numbers(xyz.split_values("10-1 (-3)"), int) == [10, 7, 4, 1]
    assert xyz.expand_numbers(xyz.split_values("0.5-1.5 [5]"), float) == [0.5, 0.75, 1.0, 1.25, 1.5]
    assert xyz.expand_numbers(xyz.split_values("1-10 [4]"), int) == [1, 4, 7, 10]
    assert xyz.expand_numbers(xyz.split_values("-1, 3, 7-8"), int) == [-1, 3, 7, 8]
    assert xyz.split_values('a, "b, c", d') == ["a", "b, c", "d"]
    with pytest.raises(ScriptError):
        xyz.expand_numbers(["1-5 (-1)"], int)
    with pytest.raises(ScriptError):
        xyz.expand_numbers(["abc"], float)
    assert xyz.find_axis("cfg scale").label == "CFG Scale" and xyz.find_axis(None).label == "Nothing"
    with pytest.raises(ScriptError, match="by name"):
        xyz.find_axis(4)  # A1111's index of Steps: its list differs from Easel's, so numbers are refused
    with pytest.raises(ScriptError, match="unknown axis"):
        xyz.find_axis("Colour")


def test_lora_weight_and_prompt_sr_axes():
    class Req:
        prompt, negative_prompt = "a cat <lora:foo:1> <lora:bar:0.3>", "ugly cat"

    assert xyz._lora_weight(Req, "0.5", [])["prompt"] == "a cat <lora:foo:0.5> <lora:bar:0.5>"
    assert xyz._lora_weight(Req, "bar:0.7", [])["prompt"] == "a cat <lora:foo:1> <lora:bar:0.7>"
    with pytest.raises(ScriptError):
        xyz._lora_weight(Req, "baz:0.7", [])
    assert xyz._prompt_sr(Req, "dog", ["cat", "dog"]) == {
        "prompt": "a dog <lora:foo:1> <lora:bar:0.3>",
        "negative_prompt": "ugly dog",
    }


def test_xyz_2x3_grid_size_labels_and_cells_match_plain_generations(make_app, serve):
    client = serve(make_app("--nowebui"))
    args = ["Seed", "11, 12", "Steps", "1-3", "Nothing", "", True, False, False, 0]
    images, info = txt2img(client, script_name="X/Y/Z plot", script_args=args)
    plot = info["xyz_plot"]
    assert plot["x_labels"] == ["Seed: 11", "Seed: 12"] and plot["y_labels"] == ["Steps: 1", "Steps: 2", "Steps: 3"]
    grid, cells = images[0], images[1:]
    left, top, w, h = plot["left"], plot["top"], plot["width"], plot["height"]
    assert (w, h) == (64, 64) and left > 0 and top > 0
    assert grid.size == (left + 2 * w, top + 3 * h) and len(cells) == 6 and info["index_of_first_image"] == 1
    g = pixels(grid)
    assert (g[:top, left:] < 128).any() and (g[top:, :left] < 128).any()  # the labels are drawn
    for i, (steps, seed) in enumerate([(s, x) for s in (1, 2, 3) for x in (11, 12)]):
        assert f"Steps: {steps}," in info["infotexts"][1 + i] and f"Seed: {seed}," in info["infotexts"][1 + i]
        plain, _ = txt2img(client, seed=seed, steps=steps)
        row, col = steps - 1, seed - 11
        crop = g[top + row * h : top + (row + 1) * h, left + col * w : left + (col + 1) * w]
        assert np.array_equal(crop, pixels(plain[0])), (steps, seed)
        assert np.array_equal(pixels(cells[i]), pixels(plain[0]))


def test_xyz_args_by_name_seeds_fixed_once_or_kept_random(make_app):
    app = make_app("--nowebui")
    from webui.generation.requests import Txt2ImgRequest

    def run(**args):
        # script_args by name (what the UI sends); set without validation in case the request model still only
        # declares a list for it
        req = Txt2ImgRequest(prompt="a red circle", steps=1, seed=-1, script_name="X/Y/Z plot")
        req = req.model_copy(update={"script_args": args})
        return app.jobs.wait(app.submit_txt2img(req, from_api=False))

    fixed = run(x_type="CFG Scale", x_values="5-6 [2]", y_type="Size", y_values="64x64, 64x128", draw_legend=False)
    plot = fixed.info["xyz_plot"]
    assert plot["x_labels"] == ["CFG Scale: 5", "CFG Scale: 6"] and plot["y_labels"] == ["Size: 64x64", "Size: 64x128"]
    assert plot["left"] == 0 and plot["top"] == 0  # no legend drawn
    assert fixed.images[0].size == (2 * 64, 2 * 128)  # cells as large as the largest image
    seeds = [s for s in fixed.info["all_seeds"]]
    assert len(seeds) == 4 and len(set(seeds)) == 1 and seeds[0] != -1
    assert [im.size for im in fixed.images[1:]] == [(64, 64), (64, 64), (64, 128), (64, 128)]
    kept = run(x_type="Steps", x_values="1, 1", keep_random_seeds=True)
    assert len(set(kept.info["all_seeds"])) == 2
    with pytest.raises(Exception, match="Prompt S/R"):
        run(x_type="Prompt S/R", x_values="dog, cat")


def test_xyz_checkpoint_axis_uses_override_settings(make_app, serve):
    app = make_app("--nowebui")
    client = serve(app)
    titles = [m["title"] for m in client.get("/sdapi/v1/sd-models").json()]
    assert len(titles) == 2
    images, info = txt2img(
        client, seed=3, script_name="X/Y/Z plot", script_args=["Checkpoint name", ",".join(f'"{t}"' for t in titles)]
    )
    assert not np.array_equal(pixels(images[1]), pixels(images[2]))
    for title, cell in zip(titles, images[1:]):
        plain, _ = txt2img(client, seed=3, override_settings={"sd_model_checkpoint": title})
        assert np.array_equal(pixels(cell), pixels(plain[0]))


def test_prompts_from_file_lines_give_images_with_their_seeds_and_prompts(make_app, serve):
    client = serve(make_app("--nowebui"))
    text = 'a cat\n--prompt "a dog" --negative_prompt blurry --seed 5 --steps 2\n\n  a bird  \n'
    images, info = txt2img(
        client,
        prompt="",
        seed=100,
        steps=1,
        script_name="Prompts from file or textbox",
        script_args=[True, False, "start", text],
    )
    assert len(images) == 3 and info["all_seeds"] == [100, 5, 102]
    assert info["all_prompts"] == ["a cat", "a dog", "a bird"]
    assert info["all_negative_prompts"] == ["", "blurry", ""]
    texts = info["infotexts"]
    assert texts[0].startswith("a cat\n") and "Seed: 100," in texts[0] and "Steps: 1," in texts[0]
    assert texts[1].startswith("a dog\nNegative prompt: blurry\n")
    assert "Seed: 5," in texts[1] and "Steps: 2," in texts[1]
    assert "Seed: 102," in texts[2]
    plain, _ = txt2img(client, prompt="a dog", negative_prompt="blurry", seed=5, steps=2)
    assert np.array_equal(pixels(images[1]), pixels(plain[0]))

    same, info = txt2img(
        client,
        prompt="style",
        seed=-1,
        steps=1,
        script_name="Prompts from file or textbox",
        script_args=[False, True, "end", "one\ntwo"],
    )
    assert info["all_prompts"] == ["style one", "style two"] and len(set(info["all_seeds"])) == 1
    bad = client.post(
        "/sdapi/v1/txt2img",
        json={
            "prompt": "",
            "steps": 1,
            "script_name": "Prompts from file or textbox",
            "script_args": [False, False, "start", "ok\n--steps lots"],
        },
    )
    assert bad.status_code == 422 and "line 2" in bad.json()["detail"]


def test_prompts_from_file_line_parser():
    assert pff.parse_line(
        '--prompt a cat "in a hat" --steps 4 --cfg_scale 6.5 --sampler_name "Euler a" --tiling true --sd_model tiny'
    ) == {
        "prompt": "a cat in a hat",
        "steps": 4,
        "cfg_scale": 6.5,
        "sampler_name": "Euler a",
        "tiling": True,
        "sd_model": "tiny",
    }
    for bad in ("--outpath_samples /etc", "--steps", "--steps four", "prompt --steps 2"):
        with pytest.raises(ValueError):
            pff.parse_line(bad)


def test_xyz_values_dropdown_from_live_lists_and_hostile_values(make_app, serve, data_dir):
    """#19 item 1: an axis with a known set of values takes A1111's `x_values_dropdown` (a list of names from the
    host's live lists, `ext.choices`); csv_mode and numeric axes keep the text; anything but a list of names is a
    422 before a job is queued."""
    import shutil

    app = make_app("--nowebui")
    client = serve(app)
    handle = app.extensions.records["xyz_grid"].running
    titles = [m["title"] for m in client.get("/sdapi/v1/sd-models").json()]
    assert handle.choices("checkpoints") == titles
    assert handle.choices("samplers")[:2] and "Karras" in handle.choices("schedulers")
    assert handle.choices("vae")[:2] == ["Automatic", "None"]
    with pytest.raises(ValueError, match="unknown list"):
        handle.choices("../etc")
    plot = next(s for s in handle.scripts if s.title == "X/Y/Z plot")
    assert plot.axis_choices("Checkpoint name") == titles and plot.axis_choices("Steps") is None

    # a checkpoint dropped into the folder is in the list once the folder watch has looked (no 🔄)
    ckpts = data_dir / "models" / "Stable-diffusion"
    shutil.copyfile(ckpts / "tiny-a.safetensors", ckpts / "dropped-in.safetensors")
    app.model_watch.min_interval = 0
    app.model_watch.token()
    assert any(t.startswith("dropped-in.safetensors [") for t in plot.axis_choices("Checkpoint name"))

    base = ["Sampler", "ignored, text", "Steps", "1", "Nothing", "", False, False, False, 0]
    images, info = txt2img(client, script_name="X/Y/Z plot", script_args=[*base, ["Euler", "DDIM"], None, None])
    assert info["xyz_plot"]["x_labels"] == ["Sampler: Euler", "Sampler: DDIM"] and len(images) == 1 + 2
    assert info["xyz_plot"]["y_labels"] == ["Steps: 1"]  # a numeric axis: its text
    texts = ["Sampler", "Euler", *base[2:]]
    _, info = txt2img(client, script_name="X/Y/Z plot", script_args=[*texts, ["DDIM"], None, None, True])
    assert info["xyz_plot"]["x_labels"] == ["Sampler: Euler"]  # csv_mode: the text wins over the dropdown

    for bad in (1e9, -1, "../../etc/passwd", {"a": 1}, [1.5], ["x" * 5000], ["Euler"] * 100_000, [None]):
        r = client.post(
            "/sdapi/v1/txt2img",
            json={"prompt": "a", "steps": 1, "script_name": "X/Y/Z plot", "script_args": [*base, bad]},
        )
        assert r.status_code == 422, (str(bad)[:40], r.status_code, r.text[:200])
        assert "X/Y/Z" in r.text or "Sampler" in r.text, r.text[:200]
    r = client.post(
        "/sdapi/v1/txt2img",
        content=b'{"prompt": "a", "script_name": "X/Y/Z plot", "script_args": '
        + b'["Sampler", "", "Nothing", "", "Nothing", "", false, false, false, 0, NaN]}',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422, r.text[:200]
    r = client.post(
        "/sdapi/v1/txt2img",
        json={"prompt": "a", "steps": 1, "script_name": "X/Y/Z plot", "script_args": [*base, ["no such sampler"]]},
    )
    assert r.status_code == 422 and "no such sampler" in r.text, r.text[:300]
