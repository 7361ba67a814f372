"""Each kind of model file goes to its folder (the file decides, not the request), and a file nothing recognises is
refused unless a folder was given."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from tests.downloads.conftest import files_in, install


def _safetensors(tmp_path, name: str, tensors: dict) -> bytes:
    path = tmp_path / name
    save_file({k: torch.zeros(s) for k, s in tensors.items()}, str(path))
    return path.read_bytes()


KINDS = [
    ("vae.safetensors", {"encoder.conv_in.weight": (8, 3, 3, 3), "decoder.conv_in.weight": (8, 4, 3, 3)}, "VAE"),
    ("cn.safetensors", {"control_model.input_hint_block.0.weight": (16, 3, 3, 3)}, "ControlNet"),
    ("up.safetensors", {"conv_first.weight": (64, 3, 3, 3), "body.0.rdb1.conv1.weight": (32, 64, 3, 3)}, "ESRGAN"),
    ("emb.safetensors", {"emb_params": (2, 768)}, "embeddings"),
]


@pytest.mark.parametrize("name,tensors,folder", KINDS, ids=[k[2] for k in KINDS])
def test_each_kind_goes_to_its_folder(dl_client, dl_app, models_server, tmp_path, name, tensors, folder):
    url = models_server.add(f"/k/{name}", body=_safetensors(tmp_path, name, tensors))
    view = install(dl_client, url=url)
    assert view["status"] == "done", view
    from webui.downloads.names import folder_path

    assert view["result"]["path"] == str(folder_path(dl_app, folder) / name)
    assert view["result"]["model"]["folder"] == folder


def test_an_embedding_pickle_is_recognised(dl_client, dl_app, models_server, tmp_path):
    src = tmp_path / "style.pt"
    torch.save({"string_to_param": {"*": torch.zeros(2, 768)}, "name": "style", "step": 100}, src)
    view = install(dl_client, url=models_server.add("/k/style.pt", body=src.read_bytes()), folder="Lora")
    assert view["status"] == "done", view
    assert view["result"]["path"] == str(dl_app.paths.embeddings_dir / "style.pt")
    assert view["result"]["model"]["convertible"] is False  # kept as A1111 reads it


def test_unrecognised_files(dl_client, dl_app, models_server, tmp_path):
    body = _safetensors(tmp_path, "odd.safetensors", {"something.else": (3,)})
    url = models_server.add("/k/odd.safetensors", body=body)
    before = files_in(dl_app.paths.models_dir)
    view = install(dl_client, url=url)
    assert view["status"] == "failed" and "not recognised" in view["error"] and "folder" in view["error"], view
    assert files_in(dl_app.paths.models_dir) == before
    view = install(dl_client, url=url, folder="VAE")  # the user says where: kept there, with a note
    assert view["status"] == "done" and view["result"]["path"] == str(dl_app.paths.vae_dir / "odd.safetensors")
    assert any("not recognised" in n for n in view["result"]["model"]["notes"])
    # a file that isn't what its extension says is refused and removed
    url = models_server.add("/k/fake.safetensors", body=b"<html>login required</html>")
    view = install(dl_client, url=url, folder="Stable-diffusion")
    assert view["status"] == "failed" and "not a readable safetensors file" in view["error"], view
    assert not (dl_app.paths.ckpt_dir / "fake.safetensors").exists()
