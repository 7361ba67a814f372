"""CodeFormer only when the user has installed spandrel_extra_arches (--no-deps) themselves: without it a CodeFormer
file is refused naming the licence and the pip command; with it (installed here into a temp folder put on sys.path,
as a user's own install would be importable) a random CodeFormer in its published .pth layout (params_ema) restores
the face of a txt2img, `code_former_weight` changes the result, and the infotext says `Face restoration: CodeFormer`.

Slow by nature: CodeFormer's VQ encoder/generator is fixed at 512² with 64..512 channels (spandrel's loader fixes
it), so each restored face is one full-size forward (~15-40 s on the shared 2-core CPU)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.factories_faces import cell_box
from tests.faces.conftest import link_into
from webui.faces.detect import Box
from webui.faces.restore import FaceRestoreError, FaceRestorers, crop_square
from webui.generation.requests import Txt2ImgRequest

VERSION = "0.2.0"


def _drop_extra_arches() -> None:
    for name in [n for n in sys.modules if n == "spandrel_extra_arches" or n.startswith("spandrel_extra_arches.")]:
        del sys.modules[name]


@pytest.fixture(autouse=True)
def _no_extra_arches_before_or_after():
    """Each test starts and ends without the package imported (the other face tests run without it)."""
    _drop_extra_arches()
    yield
    _drop_extra_arches()


@pytest.fixture(scope="session")
def extra_arches(tmp_path_factory) -> Path:
    """spandrel_extra_arches installed with --no-deps into a temp folder (it declares torchvision)."""
    target = tmp_path_factory.mktemp("extra-arches")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-compile",
            "--target",
            str(target),
            f"spandrel_extra_arches=={VERSION}",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0 and (target / "spandrel_extra_arches").is_dir(), r.stderr[-2000:]
    return target


@pytest.fixture(scope="session")
def codeformer_pth(extra_arches, tmp_path_factory) -> Path:
    """A random CodeFormer in codeformer-v0.1.0.pth's layout ({"params_ema": state dict}), with a small transformer
    (the VQ encoder/generator sizes are fixed by the architecture)."""
    sys.path.insert(0, str(extra_arches))
    try:
        from webui.faces.codeformer import codeformer_arch

        arch_module = sys.modules[type(codeformer_arch()).__module__]
        torch.manual_seed(0)
        net = arch_module.CodeFormer(
            dim_embd=64,
            n_head=8,
            n_layers=1,
            codebook_size=32,
            latent_size=256,
            connect_list=["32", "64"],
            fix_modules=["quantize", "generator"],
        )
        path = tmp_path_factory.mktemp("codeformer") / "codeformer-v0.1.0.pth"
        torch.save({"params_ema": net.state_dict()}, str(path))
        return path
    finally:
        sys.path.remove(str(extra_arches))
        _drop_extra_arches()


def test_without_the_package_codeformer_is_refused_with_the_licence(tmp_path, codeformer_pth):
    link_into(codeformer_pth, tmp_path / "Codeformer")
    with pytest.raises(FaceRestoreError, match=r"S-Lab License.*pip install --no-deps spandrel_extra_arches"):
        FaceRestorers(tmp_path).model("CodeFormer")


def _arr(img):
    return np.asarray(img.convert("RGB"), dtype=np.int16)


def test_codeformer_restores_the_face_with_its_weight(
    monkeypatch, make_app, data_dir, extra_arches, codeformer_pth, detectors
):
    monkeypatch.syspath_prepend(str(extra_arches))
    link_into(codeformer_pth, data_dir / "models" / "Codeformer")
    link_into(detectors / "face_fixed.onnx", data_dir / "models" / "adetailer")
    app = make_app("--nowebui")
    app.set_options({"face_restoration_model": "CodeFormer", "code_former_weight": 0.0})
    base = {"prompt": "a face", "steps": 1, "seed": 3, "width": 128, "height": 128}
    plain = app.jobs.wait(app.submit_txt2img(Txt2ImgRequest(**base), from_api=True))
    w0 = app.jobs.wait(app.submit_txt2img(Txt2ImgRequest(**base, restore_faces=True), from_api=True))
    assert "Face restoration: CodeFormer" in w0.infotexts[0] and w0.info["face_restoration_model"] == "CodeFormer"
    a, b = _arr(plain.images[0]), _arr(w0.images[0])
    x0, y0, x1, y1 = cell_box(19, (128, 128))
    cx0, cy0, cx1, cy1 = crop_square(Box(x0, y0, x1, y1, 1.0), (128, 128))
    outside = np.ones((128, 128), bool)
    outside[cy0:cy1, cx0:cx1] = False
    assert np.array_equal(a[outside], b[outside]) and np.abs(a[y0:y1, x0:x1] - b[y0:y1, x0:x1]).mean() > 5
    model = app.generation.faces.model("CodeFormer")
    assert model.descriptor.architecture.id == "CodeFormer"
    # the weight reaches the model: at 1 the encoder features are fused into the generator, at 0 not (CodeFormer
    # has no noise: the same crop at the same weight is the same face)
    app.set_options({"code_former_weight": 1.0})
    w1 = app.jobs.wait(app.submit_txt2img(Txt2ImgRequest(**base, restore_faces=True), from_api=True))
    c = _arr(w1.images[0])
    assert np.array_equal(c[outside], a[outside]) and np.abs(c[y0:y1, x0:x1] - b[y0:y1, x0:x1]).mean() > 1
