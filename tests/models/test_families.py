"""SD 2.x (v and epsilon) and SDXL checkpoints: written in A1111 layout by our exporter, recognised from tensor shapes,
loaded through the same single-file path as SD 1.x (diffusers' own LDM converters), and run through the real
Application. Full-size layouts (meta-device models from the shipped templates) probe back to the templates."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from tests.factories import (
    tiny_sd2_components,
    tiny_sdxl_components,
    write_tiny_sd2_checkpoint,
    write_tiny_sdxl_checkpoint,
)
from webui.models import loader
from webui.models.families import Family
from webui.models.ldm_keys import save_a1111_checkpoint, to_ldm_state_dict

SEED = 3


@pytest.fixture(scope="module")
def family_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {
        "sd2-v": write_tiny_sd2_checkpoint(root / "tiny-sd2-v.safetensors", SEED),
        "sd2-eps": write_tiny_sd2_checkpoint(root / "tiny-sd2-eps.safetensors", SEED, prediction_type="epsilon"),
        "sdxl": write_tiny_sdxl_checkpoint(root / "tiny-sdxl.safetensors", SEED),
        "sdxl-inpaint": write_tiny_sdxl_checkpoint(root / "tiny-sdxl-inpainting.safetensors", SEED, in_channels=9),
    }


@pytest.mark.parametrize(
    "kind, family, prediction, label",
    [
        ("sd2-v", Family.SD2, "v_prediction", "SD 2.x (v)"),
        ("sd2-eps", Family.SD2, "epsilon", "SD 2.x"),
        ("sdxl", Family.SDXL, "epsilon", "SDXL"),
    ],
)
def test_probe_recognises_family_prediction_and_native_size(family_files, kind, family, prediction, label):
    result = loader.probe_file(family_files[kind])
    assert (result.family, result.prediction_type, result.label) == (family, prediction, label)
    assert result.native_size == 64 and not result.inpainting  # the tiny files carry native_size in easel.config
    assert result.configs["scheduler"]["prediction_type"] == prediction
    te = result.configs["text_encoder"]
    assert (te["hidden_size"], te["num_attention_heads"], te["intermediate_size"]) == (32, 4, 64)
    assert te["num_hidden_layers"] == 2  # SD2: the file's 3 resblocks minus the unused last one
    if family == Family.SDXL:
        te2, unet = result.configs["text_encoder_2"], result.configs["unet"]
        assert (te2["hidden_size"], te2["projection_dim"], te2["num_hidden_layers"]) == (64, 48, 2)
        assert unet["transformer_layers_per_block"] == [1, 2] and unet["cross_attention_dim"] == 96
        assert unet["addition_time_embed_dim"] == 8 and unet["projection_class_embeddings_input_dim"] == 96


def test_sd2_file_has_the_openclip_layout(family_files):
    from safetensors import safe_open

    with safe_open(str(family_files["sd2-v"]), framework="pt") as f:
        keys = set(f.keys())
    p = "cond_stage_model.model."
    assert {
        p + "token_embedding.weight",
        p + "positional_embedding",
        p + "ln_final.weight",
        p + "text_projection",
        p + "transformer.resblocks.2.attn.in_proj_weight",
    } <= keys  # 2 used blocks + the dropped last one
    assert not any(k.startswith("cond_stage_model.transformer.") for k in keys)


def _tokens():
    return torch.tensor([[49406, 320, 1215, 49407] + [49407] * 73])


@pytest.mark.parametrize("kind", ["sd2-v", "sdxl"])
def test_round_trip_through_diffusers_converters_is_exact(family_files, tmp_path, kind):
    lc = loader.build_from_single_file(family_files[kind], tmp_path)
    if kind == "sdxl":
        names, built = ("unet", "vae", "text_encoder", "text_encoder_2"), tiny_sdxl_components(SEED)
        assert type(lc.pipeline).__name__ == "StableDiffusionXLPipeline"
        assert lc.pipeline.tokenizer_2.pad_token == "!" and lc.pipeline.tokenizer.pad_token == "<|endoftext|>"
    else:
        names, built = ("unet", "vae", "text_encoder"), tiny_sd2_components(SEED)
        assert type(lc.pipeline).__name__ == "StableDiffusionPipeline" and lc.pipeline.tokenizer.pad_token == "!"
    for name, ours in zip(names, built):
        a, b = ours.state_dict(), getattr(lc.pipeline, name).state_dict()
        assert set(a) == set(b), name
        for k in a:
            assert torch.equal(a[k], b[k]), (name, k)
    # the same hyperparameters too (heads, activations, depth): the same outputs
    with torch.no_grad():
        for name, ours in zip(names[2:], built[2:]):
            x, y = (
                ours(_tokens(), output_hidden_states=True),
                getattr(lc.pipeline, name)(_tokens(), output_hidden_states=True),
            )
            torch.testing.assert_close(x.hidden_states[-2], y.hidden_states[-2], atol=1e-5, rtol=1e-5)
        cond = torch.randn(1, 77, built[0].config.cross_attention_dim)
        extra = {}
        if kind == "sdxl":
            extra = {"added_cond_kwargs": {"text_embeds": torch.randn(1, 48), "time_ids": torch.ones(1, 6) * 64}}
        sample = torch.randn(1, 4, 8, 8)
        # bit-equal weights; summation order may differ with the loaded tensors' memory layout (~1e-6)
        torch.testing.assert_close(
            built[0](sample, 10, cond, **extra).sample,
            lc.pipeline.unet(sample, 10, cond, **extra).sample,
            atol=1e-5,
            rtol=1e-5,
        )


@pytest.mark.parametrize("kind", ["sd2-v", "sdxl", "sdxl-inpaint"])
def test_txt2img_through_the_application(make_app, data_dir, family_files, kind):
    from webui.generation.requests import Txt2ImgRequest

    shutil.copy(family_files[kind], data_dir / "models" / "Stable-diffusion")
    app = make_app("--nowebui")
    model = app.switch_checkpoint(family_files[kind].name)
    assert model.probe.family == (Family.SDXL if kind.startswith("sdxl") else Family.SD2)
    assert model.probe.inpainting == kind.endswith("inpaint")  # 9 channels: run as inpainting of a blank image

    def run(seed):
        r = app.jobs.wait(app.submit_txt2img(Txt2ImgRequest(prompt="a red circle", steps=2, seed=seed), from_api=True))
        return r.images[0]

    a, b, c = run(1), run(1), run(2)
    assert a.size == (64, 64)  # the checkpoint's native size
    expected = "v_prediction" if kind == "sd2-v" else "epsilon"
    assert model.pipeline.scheduler.config.prediction_type == expected  # the sampler built for the run keeps it
    if kind == "sdxl-inpaint":
        from webui.generation.img2img import inpaint_pipeline

        assert type(inpaint_pipeline(model)).__name__ == "StableDiffusionXLInpaintPipeline"
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))


def test_sdxl_img2img_uses_the_xl_pipeline(make_app, data_dir, family_files):
    from PIL import Image

    from webui.generation.img2img import derived_pipeline
    from webui.generation.requests import Img2ImgRequest

    shutil.copy(family_files["sdxl"], data_dir / "models" / "Stable-diffusion")
    app = make_app("--nowebui")
    model = app.switch_checkpoint("tiny-sdxl")
    req = Img2ImgRequest(prompt="a yellow square", steps=2, seed=1, denoising_strength=0.6)
    r = app.jobs.wait(app.submit_img2img(req, from_api=True, images=[Image.new("RGB", (64, 64), (200, 30, 30))]))
    assert r.images[0].size == (64, 64)
    assert type(derived_pipeline(model, "img2img")).__name__ == "StableDiffusionXLImg2ImgPipeline"
    assert derived_pipeline(model, "img2img").text_encoder_2 is model.pipeline.text_encoder_2


def test_sd2_nine_channel_unet_is_inpainting(tmp_path):
    unet, vae, te = tiny_sd2_components(seed=1, in_channels=9)
    path = save_a1111_checkpoint(
        tmp_path / "sd2-inp.safetensors",
        unet,
        vae,
        te,
        family="sd2",
        easel_config={"text_encoder": {"num_attention_heads": 4}},
    )
    result = loader.probe_file(path)
    assert result.family == Family.SD2 and result.inpainting
    assert result.prediction_type == "epsilon" and result.native_size == 512  # SD 2.x inpainting: the 512 eps base
    assert result.label == "SD 2.x inpainting"


def _meta_models(template: str, sdxl: bool):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from webui.models.probe import load_template

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(load_template(template, "unet"))
        vae = AutoencoderKL.from_config(load_template(template, "vae"))
        te = CLIPTextModel(CLIPTextConfig.from_dict(load_template(template, "text_encoder")))
        te2 = (
            CLIPTextModelWithProjection(CLIPTextConfig.from_dict(load_template(template, "text_encoder_2")))
            if sdxl
            else None
        )
    return unet, vae, te, te2


@pytest.mark.parametrize("template, family, native", [("sd21v", Family.SD2, 768), ("sdxl", Family.SDXL, 1024)])
def test_probe_builds_full_size_configs_from_shapes(template, family, native):
    """The probe, fed SD 2.1-v's and SDXL base's real shapes (meta-device models, no weights, written by our
    exporter), reproduces every architecture value of the shipped templates."""
    from webui.models.probe import load_template, probe

    sdxl = family == Family.SDXL
    unet, vae, te, te2 = _meta_models(template, sdxl)
    sd = to_ldm_state_dict(unet, vae, te, text_encoder_2=te2, family=family.value)
    if not sdxl:
        assert "cond_stage_model.model.transformer.resblocks.23.mlp.c_proj.bias" in sd  # the real 24-block layout
    result = probe({k: tuple(v.shape) for k, v in sd.items()})
    assert result.family == family and result.native_size == native
    assert result.prediction_type == ("epsilon" if sdxl else "v_prediction")
    components = ("unet", "vae", "text_encoder") + (("text_encoder_2",) if sdxl else ())
    for component in components:
        for key, value in load_template(template, component).items():
            if key.startswith("_") or key in ("sample_size", "architectures"):
                continue
            got = result.configs[component].get(key)
            assert got == value or (isinstance(value, list) and list(got) == value), (component, key, got, value)


@pytest.mark.parametrize("kind, family", [("sd2-v", Family.SD2), ("sdxl", Family.SDXL)])
def test_diffusers_folder_of_each_family_loads(family_files, tmp_path, kind, family):
    lc = loader.build_from_single_file(family_files[kind], tmp_path / "cfg")
    lc.pipeline.save_pretrained(str(tmp_path / "folder"))
    again = loader.build_from_diffusers_folder(tmp_path / "folder")
    assert again.probe.family == family and again.probe.native_size == 64
    assert again.probe.prediction_type == lc.probe.prediction_type
    assert type(again.pipeline) is type(lc.pipeline)
    assert torch.equal(again.pipeline.unet.conv_in.weight, lc.pipeline.unet.conv_in.weight)
