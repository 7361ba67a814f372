"""The galleries' buttons (#19 item 11): Save (the selected image) and Zip (all) write into outputs/save only,
through a temp file and a link to a fresh name (never over another file), byte for byte (the infotext kept); a
file that isn't an image is refused; 📂 Open folder exists only on a loopback server and refuses when exposed;
Extras' results have Send to img2img / inpaint."""

from __future__ import annotations

import io
import zipfile
from types import SimpleNamespace

import gradio as gr
import pytest
from PIL import Image, PngImagePlugin

from webui.errors import InvalidRequest
from webui.flags import parse_args
from webui.saved_images import save_images, zip_images
from webui.ui.gallery_buttons import GalleryButtons


def png(path, color=(200, 10, 10), text="a cat\nSteps: 4, Seed: 7"):
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", text)
    Image.new("RGB", (16, 12), color).save(path, format="PNG", pnginfo=info)
    return path


@pytest.fixture
def shown(tmp_path):
    cache = tmp_path / "gradio-cache"
    cache.mkdir()
    return [str(png(cache / "a.png")), str(png(cache / "b.png", (0, 0, 255), "a dog\nSteps: 5, Seed: 8"))]


def test_save_copies_the_selected_image_into_outputs_save(tmp_path, shown):
    dest = tmp_path / "outputs" / "save"
    first = save_images([shown[1]], dest)
    second = save_images([shown[1]], dest)
    assert [p.name for p in first + second] == ["00000-b.png", "00001-b.png"]
    assert first[0].read_bytes() == open(shown[1], "rb").read()
    assert Image.open(first[0]).info["parameters"] == "a dog\nSteps: 5, Seed: 8"
    assert sorted(p.name for p in dest.iterdir()) == ["00000-b.png", "00001-b.png"]  # no temp file left


def test_zip_holds_every_image_in_order(tmp_path, shown):
    archive = zip_images(shown, tmp_path / "save")
    assert archive.name == "00000-images.zip" and archive.parent == tmp_path / "save"
    with zipfile.ZipFile(archive) as z:
        assert z.namelist() == ["00000-a.png", "00001-b.png"]
        assert Image.open(io.BytesIO(z.read("00001-b.png"))).getpixel((0, 0)) == (0, 0, 255)
    assert [p.name for p in (tmp_path / "save").iterdir()] == ["00000-images.zip"]


def test_hostile_inputs_are_refused(tmp_path, shown):
    dest = tmp_path / "save"
    secret = tmp_path / "secret.txt"
    secret.write_text("not an image")
    for bad in ([str(secret)], ["/etc/passwd"], [str(tmp_path / "missing.png")], [], [str(tmp_path)]):
        with pytest.raises(InvalidRequest):
            save_images(bad, dest)
        with pytest.raises(InvalidRequest):
            zip_images(bad, dest)
    weird = png(tmp_path / "..%2f..%2fx.png.exe")  # an odd name stays a plain file name inside the folder
    (saved,) = save_images([str(weird)], dest)
    assert saved.parent == dest and saved.suffix == ".png" and "/" not in saved.name
    assert not [p for p in dest.iterdir() if p.name.startswith(".")]


def app_stub(tmp_path, *flags):
    ns = parse_args(["--data-dir", str(tmp_path), *flags])
    return SimpleNamespace(
        ns=ns,
        paths=SimpleNamespace(outputs_dir=tmp_path / "outputs"),
        outputs=SimpleNamespace(base_folder=lambda kind: tmp_path / "outputs" / f"{kind}-images"),
    )


def test_open_folder_only_on_loopback(tmp_path, shown):
    with gr.Blocks():
        local = GalleryButtons(app_stub(tmp_path), "txt2img", "txt2img", ("img2img", "inpaint", "extras"))
    assert local.local and local.open.visible
    with gr.Blocks():
        exposed = GalleryButtons(app_stub(tmp_path, "--listen"), "txt2img", "txt2img", ("img2img",))
    assert not exposed.local and not exposed.open.visible
    assert "only for a server on this machine" in exposed.on_open()
    # Save and Zip through the buttons: the selected image, then all, with the download offered
    files, status = local.on_save([(p, None) for p in shown], {"selected": 1})
    assert files["visible"] and files["value"][0].endswith("00000-b.png") and "Saved" in status
    files, status = local.on_zip([(p, None) for p in shown])
    assert files["value"][0].endswith("images.zip") and str(tmp_path / "outputs" / "save") in status
    assert "no image" in local.on_save([], {"selected": 0})[1]
    assert "easel-error" in local.on_zip([("/etc/passwd", None)])[1]


def test_every_gallery_has_the_buttons_and_extras_sends_to_img2img(app):
    from webui.ui import build_ui

    demo = build_ui(app)
    ids = {c.get("props", {}).get("elem_id") for c in demo.config["components"]}
    for t in ("txt2img", "img2img", "extras"):
        assert {
            f"save_{t}",
            f"save_zip_{t}",
            f"{t}_open_folder",
            f"{t}_send_to_img2img",
            f"{t}_send_to_inpaint",
        } <= ids, t
