"""Make LoRA files for tests: a peft adapter with random weights on the tiny SD architecture, written in the
formats users bring (kohya with diffusers-style or sgm-style names, diffusers/peft, LyCORIS LoHa)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

from webui.training.export import peft_to_kohya, save_lora, target_modules


@lru_cache(maxsize=1)
def _modules():
    from tests.factories import tiny_components

    unet, _vae, te = tiny_components(seed=0)
    return unet, te


def random_adapter(
    seed: int, *, rank: int = 4, text_encoder: bool = True, scale: float = 0.3, unet_modules: list[str] | None = None
):
    """peft state dicts (unet, te) for the tiny architecture, lora_B random so the adapter has an effect."""
    from peft import LoraConfig, get_peft_model_state_dict

    unet, te = _modules()
    torch.manual_seed(seed)
    modules = unet_modules or target_modules("attention", text_encoder=False)
    unet.add_adapter(
        LoraConfig(r=rank, lora_alpha=rank, target_modules=modules, init_lora_weights="gaussian"), adapter_name="mk"
    )
    mods = [unet]
    if text_encoder:
        te.add_adapter(
            LoraConfig(
                r=rank,
                lora_alpha=rank,
                target_modules=target_modules("attention", text_encoder=True),
                init_lora_weights="gaussian",
            ),
            adapter_name="mk",
        )
        mods.append(te)
    with torch.no_grad():
        for m in mods:
            for n, p in m.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, scale)
    unet_sd = {k: v.clone() for k, v in get_peft_model_state_dict(unet, adapter_name="mk").items()}
    te_sd = {k: v.clone() for k, v in get_peft_model_state_dict(te, adapter_name="mk").items()} if text_encoder else {}
    from diffusers.utils.peft_utils import delete_adapter_layers

    for m in mods:
        delete_adapter_layers(m, "mk")
    return unet_sd, te_sd


def write_kohya(
    path: Path,
    seed: int,
    *,
    naming: str = "diffusers",
    text_encoder: bool = True,
    rank: int = 4,
    metadata: dict | None = None,
    dtype: str = "fp32",
    unet_modules: list[str] | None = None,
) -> Path:
    """kohya format; `unet_modules` with resnet convs (conv1, conv2) makes a LoCon."""
    unet_sd, te_sd = random_adapter(seed, rank=rank, text_encoder=text_encoder, unet_modules=unet_modules)
    sd = peft_to_kohya(unet_sd, te_sd, alpha=rank, naming=naming, unet_config=_modules()[0].config)
    return save_lora(path, sd, metadata or {"ss_network_dim": rank, "ss_network_alpha": rank}, dtype)


def write_diffusers(path: Path, seed: int) -> Path:
    """diffusers' own LoRA format (`save_lora_weights`: keys unet.…lora_A.weight, text_encoder.…)."""
    from diffusers import StableDiffusionPipeline

    unet_sd, te_sd = random_adapter(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{path.stem}"
    StableDiffusionPipeline.save_lora_weights(
        str(tmp), unet_lora_layers=unet_sd, text_encoder_lora_layers=te_sd, safe_serialization=True
    )
    (tmp / "pytorch_lora_weights.safetensors").rename(path)
    tmp.rmdir()
    return path


def write_loha(path: Path) -> Path:
    from safetensors.torch import save_file

    name = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    save_file(
        {
            f"{name}.hada_w1_a": torch.zeros(32, 2),
            f"{name}.hada_w1_b": torch.zeros(2, 32),
            f"{name}.hada_w2_a": torch.zeros(32, 2),
            f"{name}.hada_w2_b": torch.zeros(2, 32),
            f"{name}.alpha": torch.tensor(2.0),
        },
        str(path),
    )
    return path
