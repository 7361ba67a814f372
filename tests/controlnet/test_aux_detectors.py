"""The controlnet-aux detectors: shuffle and lineart_standard run without weights; weight-based detectors are listed
with the missing file until it is in <models>/ControlNet/annotators/, then run from that file; controlnet_aux's
package __init__ (and with it torchvision/timm) is never imported."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from tests.controlnet.conftest import REPO, b64, load_script, square, unb64
from webui.extensions.api import ScriptError


def pre():
    return load_script().lib("preprocessors")


def aux():
    return pre()._aux()


def outline(size=(64, 64), box=(16, 16, 48, 48)) -> Image.Image:
    """A black square outline on white: the drawing lineart_standard is made for ("from white bg & black line")."""
    image = Image.new("RGB", size, (255, 255, 255))
    ImageDraw.Draw(image).rectangle(box, outline=(0, 0, 0), width=2)
    return image


def halves(size=(64, 64)) -> Image.Image:
    """Red left half, blue right half."""
    a = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    a[:, : size[0] // 2, 0] = 255
    a[:, size[0] // 2 :, 2] = 255
    return Image.fromarray(a, "RGB")


def test_lineart_standard_draws_bright_lines_on_black_where_the_drawing_has_dark_lines():
    p = pre()
    mod = p.registry()["lineart_standard"]
    assert mod.available and mod.reason is None and mod.sliders == []
    out = p.run(mod, outline(), resolution=64)
    assert out.size == (64, 64) and out.mode == "RGB"
    a = np.asarray(out).astype(int)
    assert (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all()
    g = a[..., 0]
    ring = np.zeros_like(g, dtype=bool)
    ring[16:49, 16:49] = True
    ring[18:47, 18:47] = False  # the 2-pixel outline drawn by outline() (PIL boxes are inclusive)
    assert g[ring].mean() > 100  # the black lines become bright
    assert g[:10].max() == 0 and g[:, :10].max() == 0  # the white background becomes black
    assert g[24:40, 24:40].max() == 0  # so does the white inside the square


def test_lineart_standard_scales_to_processor_res():
    p = pre()
    out = p.run(p.registry()["lineart_standard"], outline(size=(200, 100), box=(40, 20, 120, 80)), resolution=64)
    assert out.size == (128, 64)
    assert np.asarray(out).max() > 100


def test_shuffle_moves_the_input_pixels_around_deterministically():
    p = pre()
    mod = p.registry()["shuffle"]
    assert mod.available and mod.sliders == []
    rng_before = np.random.get_state()[1].copy()
    first = p.run(mod, halves(), resolution=64)
    assert np.array_equal(np.random.get_state()[1], rng_before)  # the caller's numpy RNG is left as it was
    second = p.run(mod, halves(), resolution=64)
    assert first.size == (64, 64) and first.mode == "RGB"
    a = np.asarray(first).astype(int)
    assert np.array_equal(a, np.asarray(second))  # same input, same map
    assert not np.array_equal(a, np.asarray(halves()))  # the content is warped …
    assert a[..., 1].max() == 0  # … but only the input's colours appear: no green was made up
    assert (np.abs(a[..., 0] + a[..., 2] - 255) <= 2).all()  # each pixel is red, blue, or a blend of the two
    assert (a[..., 0] > 200).mean() > 0.05 and (a[..., 2] > 200).mean() > 0.05  # both colours survive


def test_shuffle_scales_to_processor_res():
    p = pre()
    assert p.run(p.registry()["shuffle"], halves(size=(100, 50)), resolution=64).size == (128, 64)


def test_weight_based_detectors_list_the_missing_file(tmp_path):
    p = pre()
    folder = tmp_path / "annotators"
    folder.mkdir()
    mods = p.registry(folder)
    expected = {
        "softedge_hed": "ControlNetHED.pth",
        "softedge_hedsafe": "ControlNetHED.pth",
        "softedge_pidinet": "table5_pidinet.pth",
        "softedge_pidisafe": "table5_pidinet.pth",
        "lineart_realistic": "sk_model.pth",
        "lineart_coarse": "sk_model2.pth",
        "lineart_anime": "netG.pth",
        "mlsd": "mlsd_large_512_fp32.pth",
    }
    for name, file in expected.items():
        assert not mods[name].available
        assert mods[name].reason == f"annotator weights {file} not found in {folder}"
        with pytest.raises(ValueError, match=f"{file} not found"):
            p.run(mods[name], square(), resolution=64)
    assert "not found in models/ControlNet/annotators" in p.registry()["softedge_hed"].reason  # no folder known
    assert p.annotators_in(tmp_path) == tmp_path / "annotators" and p.annotators_in(None) is None


def write_pidinet(folder, *, seed=0, safetensors=False):
    """table5_pidinet.pth in the upstream layout ({"state_dict": {"module.<key>": tensor}}), randomly initialised."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    state = aux().import_submodule("pidi").pidinet().state_dict()
    if safetensors:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "table5_pidinet.safetensors"))
    else:
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, folder / "table5_pidinet.pth")


def write_weights(folder, name: str):
    """Randomly initialised controlnet-aux networks saved under the annotator file names upstream uses."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    a = aux()
    if name == "softedge_hed":
        torch.save(a.import_submodule("hed").ControlNetHED_Apache2().state_dict(), folder / "ControlNetHED.pth")
    elif name == "lineart_realistic":
        torch.save(a.import_submodule("lineart").Generator(3, 1, 3).state_dict(), folder / "sk_model.pth")
    elif name == "mlsd":
        torch.save(a.import_submodule("mlsd").MobileV2_MLSD_Large().state_dict(), folder / "mlsd_large_512_fp32.pth")
    else:
        write_pidinet(folder)


@pytest.mark.parametrize("name", ["softedge_pidinet", "softedge_hed", "lineart_realistic", "mlsd"])
def test_weight_based_detector_runs_from_the_local_file(tmp_path, name):
    p = pre()
    folder = tmp_path / "annotators"
    write_weights(folder, name)
    mod = p.registry(folder)[name]
    assert mod.available and mod.reason is None, mod.reason
    out = p.run(mod, square(size=(100, 50), box=(30, 10, 70, 40)), resolution=64)
    assert out.size == (128, 64) and out.mode == "RGB"
    a = np.asarray(out)
    assert (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all()  # a grey map
    again = p.run(mod, square(size=(100, 50), box=(30, 10, 70, 40)), resolution=64)
    assert np.array_equal(a, np.asarray(again))  # eval mode: no dropout, no randomness


def test_the_weights_come_from_the_file(tmp_path):
    """Two different files give two different maps: the network really is the one in the annotators folder."""
    p = pre()
    maps = []
    for seed in (0, 1):
        folder = tmp_path / str(seed)
        write_pidinet(folder, seed=seed)
        maps.append(np.asarray(p.run(p.registry(folder)["softedge_pidinet"], halves(), resolution=64)))
    assert not np.array_equal(*maps)


def test_safetensors_weights_of_the_same_stem_are_used(tmp_path):
    p = pre()
    write_pidinet(tmp_path, safetensors=True)
    mod = p.registry(tmp_path)["softedge_pidinet"]
    assert mod.available, mod.reason
    assert p.run(mod, halves(), resolution=64).size == (64, 64)


def test_mlsd_has_its_threshold_sliders(tmp_path):
    mod = pre().registry(tmp_path)["mlsd"]
    assert [(s.name, s.value, s.min, s.max, s.step) for s in mod.sliders] == [
        ("MLSD Value Threshold", 0.1, 0.01, 2.0, 0.01),
        ("MLSD Distance Threshold", 0.1, 0.01, 20.0, 0.01),
    ]


def test_a_file_that_does_not_fit_is_refused_clearly(tmp_path):
    p = pre()
    torch.save({"not.a.pidinet.key": torch.zeros(3)}, tmp_path / "table5_pidinet.pth")
    mod = p.registry(tmp_path)["softedge_pidinet"]
    with pytest.raises(ScriptError, match="table5_pidinet.pth don't fit PiDiNet"):  # the user's file, not a bug
        p.run(mod, halves(), resolution=64)


def test_a_pickled_object_is_not_executed(tmp_path):
    """weights_only=True: a .pth that would run code when unpickled is refused, not loaded."""
    p = pre()
    torch.save({"state_dict": functools.partial(print, "pwned")}, tmp_path / "table5_pidinet.pth")
    with pytest.raises(ScriptError, match="table5_pidinet.pth"):
        p.run(p.registry(tmp_path)["softedge_pidinet"], halves(), resolution=64)


def test_missing_package_and_missing_controlnet_aux_are_the_reason(monkeypatch):
    p = pre()
    monkeypatch.setitem(sys.modules, "cv2", None)  # Python's "this import is blocked" marker
    assert p.registry()["shuffle"].reason == "needs opencv-python-headless (not installed)"
    monkeypatch.setitem(sys.modules, "controlnet_aux", None)
    for name in ("shuffle", "lineart_standard", "softedge_hed", "mlsd"):
        assert p.registry()[name].reason == "controlnet-aux is not installed"


def test_controlnet_aux_init_and_torchvision_are_never_imported(tmp_path):
    """In a fresh interpreter: list and run the detectors (one weight-based), with an import hook recording any
    execution of controlnet_aux/__init__.py and any attempt to import torchvision or timm."""
    write_pidinet(tmp_path / "annotators")
    code = textwrap.dedent(f"""
        import importlib, importlib.machinery, json, pathlib, sys
        from webui.extensions.host import extension_package  # (before the hook: only the detectors are watched)
        attempts = []

        class Recording:
            # controlnet_aux's own loader, noting when its package __init__ is executed
            def __init__(self, loader):
                self.loader = loader
            def create_module(self, spec):
                return None
            def exec_module(self, module):
                attempts.append("controlnet_aux/__init__.py executed")
                self.loader.exec_module(module)

        class Watch:
            # looking controlnet_aux up is fine (that is how its folder is found); executing it is not
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torchvision", "timm"):
                    attempts.append(name)
                if name != "controlnet_aux":
                    return None
                spec = importlib.machinery.PathFinder.find_spec(name, path)
                spec.loader = Recording(spec.loader)
                return spec

        sys.meta_path.insert(0, Watch())
        package = extension_package("controlnet", pathlib.Path({str(REPO / "extensions" / "controlnet")!r}))
        p = importlib.import_module(package + ".lib.preprocessors")  # as the extension's lib() imports it
        from PIL import Image
        mods = p.registry({str(tmp_path / "annotators")!r})
        ran = []
        for name in ("shuffle", "lineart_standard", "softedge_pidinet"):
            out = p.run(mods[name], Image.new("RGB", (64, 64), (200, 30, 30)), resolution=64)
            ran.append([name, list(out.size)])
        print(json.dumps({{"attempts": attempts, "ran": ran,
                          "loaded": sorted(k for k in sys.modules if "controlnet_aux" in k),
                          "torchvision": "torchvision" in sys.modules, "timm": "timm" in sys.modules}}))
    """)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["ran"] == [["shuffle", [64, 64]], ["lineart_standard", [64, 64]], ["softedge_pidinet", [64, 64]]]
    assert report["attempts"] == []  # the package __init__ never ran; torchvision and timm were never looked up
    assert not report["torchvision"] and not report["timm"]
    assert "controlnet_aux" not in report["loaded"]
    assert set(report["loaded"]) <= {
        "_easel_controlnet_aux",
        "_easel_controlnet_aux.util",
        "_easel_controlnet_aux.shuffle",
        "_easel_controlnet_aux.lineart_standard",
        "_easel_controlnet_aux.pidi",
        "_easel_controlnet_aux.pidi.model",
    }


# --- through the routes ----------------------------------------------------------------------------------------


@pytest.fixture
def aux_client(make_app, tmp_path):
    """A server whose ControlNet folder holds only annotators/table5_pidinet.pth."""
    from fastapi.testclient import TestClient

    from tests.extensions.conftest import build_server

    write_pidinet(tmp_path / "ControlNet" / "annotators")
    application = make_app("--nowebui")
    application.options.set({"control_net_models_path": str(tmp_path / "ControlNet")}, persist=False)
    with TestClient(build_server(application)) as c:
        yield c, tmp_path / "ControlNet" / "annotators"


def test_module_list_lists_the_aux_detectors(aux_client):
    client, folder = aux_client
    mods = client.get("/ext/controlnet/module_list").json()
    assert mods["module_list"][:2] == ["none", "canny"]
    assert {"shuffle", "lineart_standard", "softedge_pidinet", "softedge_pidisafe"} <= set(mods["module_list"])
    assert mods["module_detail"]["lineart_standard"] == {"model_free": False, "sliders": []}
    assert mods["unavailable"]["softedge_hed"] == f"annotator weights ControlNetHED.pth not found in {folder}"
    assert "mlsd" in mods["unavailable"] and "mlsd" not in mods["module_list"]
    assert client.get("/ext/controlnet/model_list").json()["model_list"] == []  # annotators are not ControlNets


def test_detect_runs_lineart_standard_and_refuses_a_missing_weight(aux_client):
    client, folder = aux_client
    r = client.post(
        "/ext/controlnet/detect",
        json={
            "controlnet_module": "lineart_standard",
            "controlnet_input_images": [b64(outline())],
            "controlnet_processor_res": 64,
        },
    )
    assert r.status_code == 200, r.text
    (image,) = (unb64(x) for x in r.json()["images"])
    a = np.asarray(image)
    assert image.size == (64, 64) and a[:10].max() == 0 and a[16:49, 16].mean() > 100
    r = client.post(
        "/ext/controlnet/detect",
        json={
            "controlnet_module": "softedge_pidinet",
            "controlnet_input_images": [b64(halves())],
            "controlnet_processor_res": 64,
        },
    )
    assert r.status_code == 200, r.text
    r = client.post("/ext/controlnet/detect", json={"controlnet_module": "mlsd", "controlnet_input_images": ["x"]})
    assert r.status_code == 422 and "mlsd_large_512_fp32.pth not found" in r.text
    torch.save({"not.a.pidinet.key": torch.zeros(3)}, folder / "table5_pidinet.pth")  # a file that doesn't fit
    r = client.post(
        "/ext/controlnet/detect",
        json={
            "controlnet_module": "softedge_pidinet",
            "controlnet_input_images": [b64(halves())],
            "controlnet_processor_res": 64,
        },
    )
    assert r.status_code == 422 and "don't fit PiDiNet" in r.text
