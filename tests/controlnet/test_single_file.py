"""Single-file ControlNets (the LDM layout of ControlNet v1.1, `.safetensors` and `.pth`): the tiny ControlNet is
written in that layout here (inverting diffusers' converter), with its hyperparameters in `easel.config`
metadata, and must load to exactly the same weights as its diffusers folder."""

from __future__ import annotations

import json

import pytest
import torch

from tests.controlnet.conftest import load_script


def to_ldm(net) -> dict[str, torch.Tensor]:
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    from webui.models.ldm_keys import unet_key_to_ldm

    fixed = DIFFUSERS_TO_LDM_MAPPING["controlnet"]["layers"]
    cfg = net.config
    attn = {i for i, t in enumerate(cfg.down_block_types) if t.startswith("CrossAttn")}
    out = {}
    for key, value in net.state_dict().items():
        parts = key.split(".")
        if key in fixed:
            name = fixed[key]
        elif parts[0] == "controlnet_down_blocks":
            name = f"zero_convs.{parts[1]}.0.{parts[2]}"
        elif parts[0] == "controlnet_mid_block":
            name = f"middle_block_out.0.{parts[1]}"
        elif parts[:2] == ["controlnet_cond_embedding", "blocks"]:
            name = f"input_hint_block.{2 * (int(parts[2]) + 1)}.{parts[3]}"
        else:
            name = unet_key_to_ldm(key, cfg.layers_per_block, attn)
        out[f"control_model.{name}"] = value.contiguous()
    return out


TINY = {
    "block_out_channels": [32, 64],
    "layers_per_block": 1,
    "attention_head_dim": 8,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "norm_num_groups": 32,
    "conditioning_embedding_out_channels": [16, 32, 32, 32],
}


@pytest.fixture(scope="module")
def single_files(controlnet_dir, tmp_path_factory):
    from diffusers import ControlNetModel
    from safetensors.torch import save_file

    folder_model = ControlNetModel.from_pretrained(str(controlnet_dir / "tiny-canny"), local_files_only=True)
    state = to_ldm(folder_model)
    root = tmp_path_factory.mktemp("single")
    save_file(state, str(root / "tiny-ldm.safetensors"), metadata={"easel.config": json.dumps({"controlnet": TINY})})
    return root, folder_model, state


def catalog(root, tmp_path):
    from webui.extensions import api

    models = load_script().lib("models")
    template = __import__("pathlib").Path(api.__file__).resolve().parent.parent / "models" / "configs" / "sd15"
    return models, models.ControlNetCatalog(root, template_dir=template / "unet", cache_dir=tmp_path / "cache")


def test_safetensors_single_file_loads_like_the_folder(single_files, tmp_path):
    root, folder_model, _ = single_files
    models, cat = catalog(root, tmp_path)
    [entry] = cat.refresh()
    assert entry.layout == "single" and entry.title.startswith("tiny-ldm [")
    config = cat.config(entry)
    assert config["cross_attention_dim"] == 32 and config["block_out_channels"] == [32, 64]
    loaded = cat.load(entry)
    want = folder_model.state_dict()
    got = loaded.state_dict()
    assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)


def test_pth_single_file_loads_with_weights_only(single_files, tmp_path):
    _, folder_model, state = single_files
    root = tmp_path / "pth"
    root.mkdir()
    # a .pth has no metadata: the SD 1.5 template applies, so the tiny weights don't fit and that is a clear error
    torch.save(state, root / "tiny-ldm.pth")
    models, cat = catalog(root, tmp_path)
    [entry] = cat.refresh()
    assert cat.config(entry)["block_out_channels"] == [320, 640, 1280, 1280]
    assert cat.config(entry)["cross_attention_dim"] == 32  # read from the shapes
    with pytest.raises(models.ControlNetModelError, match="could not be loaded"):
        cat.load(entry)
