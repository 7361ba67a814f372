"""IP-Adapter FaceID (ip-adapter-faceid_sd15 as safetensors) with insightface-shaped ONNX models in
models/insightface/models/buffalo_l (tests/ip_adapter/faceid_factory.py) run by onnxruntime, through the
production path: the face is found, aligned on its landmarks, embedded by the recognizer and fed to diffusers'
IPAdapterFaceIDImageProjection."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from tests.ip_adapter.faceid_factory import (
    face_image,
    write_faceid_adapter,
    write_faceid_plus_adapter,
    write_insightface,
)
from tests.ip_adapter.test_ip_adapter import BASE, _b64, write_tiny_encoder

pytest.importorskip("onnxruntime")


def _faceid_lib():
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "extensions" / "ip_adapter" / "lib" / "faceid.py"
    name = "ip_adapter_lib_faceid_test"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="module")
def face_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("faceid")
    write_insightface(root)
    write_faceid_adapter(root / "ipadapter" / "ip-adapter-faceid_tiny.safetensors")
    write_faceid_plus_adapter(root / "ipadapter" / "ip-adapter-faceid-plus_tiny.safetensors", clip_hidden=32)
    write_faceid_plus_adapter(root / "ipadapter" / "ip-adapter-faceid-plusv2_tiny.safetensors", clip_hidden=32)
    return root


def test_the_face_is_found_aligned_on_its_landmarks_and_embedded(face_models):
    """The detector's box and landmarks decoded from SCRFD's outputs; the embedding is normed, the same wherever
    the face is in the picture (the alignment follows the landmarks: a crop of a fixed place would differ) and
    another face gives another one; no face → the reason."""
    faceid = _faceid_lib()
    embedder = faceid.FaceEmbedder(face_models)
    (face,) = embedder.detect(face_image((8, 8)))
    assert face.box.tolist() == [208, 208, 304, 304]  # anchor point (256, 256) ± 1.5 strides
    assert np.allclose(face.landmarks[0], [256 - 0.4 * 32, 256 - 0.3 * 32])
    here = embedder.embed(face_image((8, 8)))
    assert abs(float(np.linalg.norm(here)) - 1) < 1e-5
    moved = embedder.embed(face_image((3, 12)))
    other = embedder.embed(face_image((8, 8), seed=5))
    assert np.abs(here - moved).max() < 1e-4 < np.abs(here - other).max()
    from webui.extensions.api import ScriptError

    with pytest.raises(ScriptError, match="no face found"):
        embedder.embed(Image.new("RGB", (200, 200), (10, 10, 10)))


@pytest.fixture
def face_client(make_app, data_dir, face_models):
    import shutil

    from fastapi.testclient import TestClient

    from webui.api.server import build_fastapi

    for sub in ("ipadapter", "insightface"):
        shutil.copytree(face_models / sub, data_dir / "models" / sub)
    app = make_app("--nowebui")
    with TestClient(build_fastapi(app)) as c:
        c.easel_app = app
        yield c


def _post(client, *units):
    body = dict(BASE)
    if units:
        body["alwayson_scripts"] = {"IP-Adapter": {"args": list(units)}}
    return client.post("/sdapi/v1/txt2img", json=body)


def _image(r):
    assert r.status_code == 200, r.text
    data = r.json()
    pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(data["images"][0]))).convert("RGB"), dtype=np.int16)
    return pixels, json.loads(data["info"])["infotexts"][0]


def _unit(**kw):
    return {"enabled": True, "image": _b64(face_image()), "model": "ip-adapter-faceid_tiny", "weight": 1.0, **kw}


def test_faceid_weight_zero_is_plain_weight_one_changes_it(face_client):
    """No CLIP image encoder is needed (none is installed here); another face gives another image; a picture
    without a face is refused with the reason, so is FaceID Plus without its CLIP encoder; the module list says
    FaceID is available, FaceID Plus not (no encoder)."""
    plain, _ = _image(_post(face_client))
    assert np.array_equal(_image(_post(face_client, _unit(weight=0)))[0], plain)
    one, info = _image(_post(face_client, _unit()))
    assert np.abs(one - plain).mean() > 2
    assert 'IP-Adapter 0: "model: ip-adapter-faceid_tiny, weight: 1, mask: False"' in info
    other, _ = _image(_post(face_client, _unit(image=_b64(face_image(seed=5)))))
    assert not np.array_equal(other, one)
    assert np.array_equal(_image(_post(face_client))[0], plain)  # unloaded after its call
    r = _post(face_client, _unit(image=_b64(Image.new("RGB", (64, 64), (10, 10, 10)))))
    assert r.status_code == 422 and "no face found" in r.text, r.text
    r = _post(face_client, _unit(model="ip-adapter-faceid-plus_tiny"))  # FaceID Plus needs a CLIP encoder too
    assert r.status_code == 422 and "models/clip_vision" in r.text, r.text
    modules = {m["name"]: m for m in face_client.get("/ext/ip_adapter/modules").json()["modules"]}
    assert modules["ip-adapter_face_id"]["available"]
    assert not modules["ip-adapter_face_id_plus"]["available"]
    assert (
        not modules["ip-adapter_clip_sd15"]["available"]
        and "models/clip_vision" in modules["ip-adapter_clip_sd15"]["reason"]
    )


def test_faceid_without_its_models_is_refused_naming_the_folder(face_client):
    import shutil

    shutil.rmtree(face_client.easel_app.paths.models_dir / "insightface")
    r = _post(face_client, _unit())
    assert r.status_code == 422 and "models/insightface" in r.text and "det_10g.onnx" in r.text, r.text
    modules = {m["name"]: m for m in face_client.get("/ext/ip_adapter/modules").json()["modules"]}
    assert (
        not modules["ip-adapter_face_id"]["available"]
        and "models/insightface" in modules["ip-adapter_face_id"]["reason"]
    )


def test_faceid_plus_takes_the_face_embedding_and_the_clip_hidden_states_of_the_aligned_face(face_client):
    """FaceID Plus (and Plus v2, told by its file name as sd-webui-controlnet tells it): weight 0 bit for bit,
    weight 1 changes the image; the projection gets the face embedding [2, 512] and the CLIP hidden states of the
    face aligned at 224 px [2, 1, 17, 32] (it fails without them); v2 adds the face tokens back (`shortcut`)."""
    from diffusers.models.embeddings import IPAdapterFaceIDPlusImageProjection

    write_tiny_encoder(face_client.easel_app.paths.models_dir / "clip_vision" / "tiny-vision")
    plain, _ = _image(_post(face_client))
    plus = _unit(model="ip-adapter-faceid-plus_tiny")
    assert np.array_equal(_image(_post(face_client, {**plus, "weight": 0}))[0], plain)
    seen: list = []
    original = IPAdapterFaceIDPlusImageProjection.forward

    def forward(self, id_embeds):
        seen.append((tuple(id_embeds.shape), tuple(self.clip_embeds.shape), self.shortcut))
        return original(self, id_embeds)

    IPAdapterFaceIDPlusImageProjection.forward = forward  # type: ignore[method-assign]
    try:
        one, info = _image(_post(face_client, plus))
        v2, _ = _image(_post(face_client, _unit(model="ip-adapter-faceid-plusv2_tiny")))
    finally:
        IPAdapterFaceIDPlusImageProjection.forward = original  # type: ignore[method-assign]
    assert np.abs(one - plain).mean() > 2 and "ip-adapter-faceid-plus_tiny" in info
    assert seen[0] == ((2, 512), (2, 1, 17, 32), False) and seen[-1][2] is True
    assert not np.array_equal(v2, one)  # same weights: only the shortcut differs
    assert np.array_equal(_image(_post(face_client))[0], plain)


def test_the_accordion_says_why_faceid_cannot_run(face_client):
    """A FaceID adapter is installed but models/insightface is empty: the IP-Adapter accordion says what it needs."""
    import shutil

    import gradio as gr

    from webui.ui.scripts_ui import build_scripts_ui

    shutil.rmtree(face_client.easel_app.paths.models_dir / "insightface")
    with gr.Blocks() as demo:
        build_scripts_ui(face_client.easel_app, "txt2img")
    notes = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "txt2img_ip_adapter_note"]
    assert len(notes) == 1 and "models/insightface" in notes[0].value and "det_10g.onnx" in notes[0].value
