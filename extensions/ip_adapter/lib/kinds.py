"""What an IP-Adapter file is, told from its keys the way diffusers' loaders tell them apart
(`UNet2DConditionLoadersMixin._convert_ip_adapter_image_proj_to_diffusers`, `FluxTransformer2DLoadersMixin`), what
it must be fed, and whether it fits the checkpoint's denoiser and the image encoder — checked here so that a wrong
file is refused with its reason instead of a size mismatch deep inside diffusers.

- IP-Adapter (`ip-adapter_sd15`, `ip-adapter_sdxl`): `image_proj.proj` (ImageProjection), fed the encoder's
  projected `image_embeds`.
- IP-Adapter Plus (`ip-adapter-plus_sd15`, `ip-adapter-plus-face_sd15`, `ip-adapter-plus_sdxl_vit-h`): the
  Resampler (`image_proj.latents`, `proj_in`, `layers.*`, `proj_out`; diffusers' IPAdapterPlusImageProjection), fed
  the encoder's penultimate hidden states (all patch tokens); its unconditional input is those of a zero image, as
  diffusers' `encode_image(output_hidden_states=True)` makes it.
- IP-Adapter Full Face (`ip-adapter-full-face_sd15`): `image_proj.proj.0..3` (IPAdapterFullImageProjection), fed the
  penultimate hidden states too.
- FLUX.1 (XLabs' `ip_adapter.safetensors`): `image_proj.proj` and biased `to_k_ip`/`to_v_ip` per double block
  (numbered from 0), fed the image_embeds of a CLIP ViT-L/14 encoder.
- FaceID (`ip-adapter-faceid_sd15`, safetensors): `image_proj.proj.0/proj.2/norm` (IPAdapterFaceIDImageProjection),
  fed the ArcFace embedding of the face in the image (faceid.py), zeros as its negative.
- FaceID Plus (`ip-adapter-faceid-plus_sd15`, `-plusv2_sd15`): the face Resampler
  (`image_proj.perceiver_resampler.*`, IPAdapterFaceIDPlusImageProjection), fed the ArcFace embedding and, set on
  the loaded layer as diffusers documents it (`clip_embeds`, `shortcut` for v2), the CLIP hidden states of the face
  aligned at 224 px."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from webui.extensions.api import ScriptError

ARCFACE_DIM = 512
FULL_FACE_TOKENS = 257  # diffusers' fixed token count for Full Face (ViT-H/14: 16² patches + CLS)
# sd-webui-controlnet's IP-Adapter module names (`module` of a ControlNet unit) and what each feeds. The adapter
# file decides what is computed; the module names are accepted as given.
CLIP_MODULES = {
    "ip-adapter_clip_sd15": "CLIP ViT-H/14 (ip-adapter_sd15, ip-adapter-plus_sd15, ip-adapter-plus-face_sd15)",
    "ip-adapter_clip_h": "CLIP ViT-H/14",
    "ip-adapter_clip_sdxl": "CLIP ViT-bigG/14 (ip-adapter_sdxl)",
    "ip-adapter_clip_g": "CLIP ViT-bigG/14",
    "ip-adapter_clip_sdxl_plus_vith": "CLIP ViT-H/14 (ip-adapter_sdxl_vit-h, ip-adapter-plus_sdxl_vit-h)",
    "ip-adapter_clip_l": "CLIP ViT-L/14 (XLabs' FLUX.1 ip_adapter)",
}
FACE_MODULES = {
    "ip-adapter_face_id": "insightface ArcFace face embedding (ip-adapter-faceid_sd15)",
    "ip-adapter_face_id_plus": "ArcFace embedding + CLIP ViT-H/14 (ip-adapter-faceid-plus_sd15, -plusv2_sd15)",
}


def modules(encoders: list, face_reason: str | None) -> list[dict]:
    """Each module with whether it can run here and, if not, why (the files it needs)."""
    clip = None if encoders else "needs a CLIP image encoder in models/clip_vision"
    out = []
    for name, feeds in (CLIP_MODULES | FACE_MODULES).items():
        reason = clip if name in CLIP_MODULES else face_reason
        if name == "ip-adapter_face_id_plus":
            reason = face_reason or clip
        out.append(
            {"name": name, "input": feeds, "available": reason is None, **({"reason": reason} if reason else {})}
        )
    return out


@dataclass(frozen=True)
class Layout:
    label: str  # for messages and the infotext
    denoiser: str  # "unet" (SD 1.x/2.x/SDXL) or "flux"
    hidden_states: bool  # fed the encoder's penultimate hidden states instead of its projected image_embeds
    width: int  # the width of that input
    face: bool = False  # FaceID: fed an ArcFace face embedding (faceid.py); Plus also the CLIP hidden states


def layout(name: str, state: dict) -> Layout:
    """In the order diffusers' loader tells the layouts apart."""
    proj, ip = state["image_proj"], state["ip_adapter"]
    if "proj.weight" in proj:
        flux = "0.to_k_ip.weight" in ip and "0.to_k_ip.bias" in ip  # XLabs' FLUX blocks, numbered from 0, biased
        return Layout("FLUX IP-Adapter" if flux else "IP-Adapter", "flux" if flux else "unet", False, _in(proj))
    if "proj.3.weight" in proj:
        return Layout("IP-Adapter Full Face", "unet", True, int(proj["proj.0.weight"].shape[-1]))
    if "perceiver_resampler.proj_in.weight" in proj and "proj.0.weight" in proj:
        width = int(proj["perceiver_resampler.proj_in.weight"].shape[-1])
        return Layout("IP-Adapter FaceID Plus", "unet", True, width, face=True)
    if "norm.weight" in proj and "proj.0.weight" in proj and "proj.2.weight" in proj:
        return Layout("IP-Adapter FaceID", "unet", False, int(proj["proj.0.weight"].shape[-1]), face=True)
    if "latents" in proj and "proj_in.weight" in proj and "proj_out.weight" in proj:
        return Layout("IP-Adapter Plus", "unet", True, int(proj["proj_in.weight"].shape[-1]))
    raise ScriptError(f"IP-Adapter {name}: its image projection ({', '.join(sorted(proj)[:4])}…) is not a known layout")


def _in(proj: dict) -> int:
    return int(proj["proj.weight"].shape[-1])


def encoder_width(encoder: Any, kind: Layout) -> int:
    """What the encoder gives this adapter: its hidden width (hidden states) or its projection width."""
    config = encoder.model.config
    return int(config.hidden_size if kind.hidden_states else config.projection_dim)


def denoiser_of(pipe: Any) -> str:
    if getattr(pipe, "unet", None) is not None:
        return "unet"
    if type(getattr(pipe, "transformer", None)).__name__ == "FluxTransformer2DModel":
        return "flux"
    return "other"


NAMES = {"unet": "SD 1.x/2.x/SDXL", "flux": "FLUX.1", "other": "this model family"}


def check_fits(name: str, state: dict, pipe: Any, encoder: Any) -> Layout:
    """The adapter's kind and shapes against this checkpoint's denoiser and the image encoder (None: not yet)."""
    kind = layout(name, state)
    has = denoiser_of(pipe)
    if has == "other":
        raise ScriptError(f"IP-Adapter is available for SD 1.x/2.x/SDXL and FLUX.1 checkpoints, not this one ({name})")
    if kind.denoiser != has:
        raise ScriptError(
            f"IP-Adapter {name} is a {kind.label} for {NAMES[kind.denoiser]} checkpoints; this checkpoint is "
            f"{NAMES[has]} (another model family)"
        )
    if has == "unet":
        _fits_unet(name, state, pipe.unet)
    else:
        _fits_flux(name, state, pipe.transformer)
    if kind.face:
        face = int(state["image_proj"]["proj.0.weight"].shape[-1])
        if face != ARCFACE_DIM:
            raise ScriptError(f"IP-Adapter {name} (FaceID) takes {face}-d face embeddings; ArcFace gives 512")
        if not kind.hidden_states:
            return kind
    if encoder is None:  # the family and the denoiser's shapes only (checked before an encoder is looked for)
        return kind
    width = encoder_width(encoder, kind)
    config = encoder.model.config
    tokens = (int(config.image_size) // int(config.patch_size)) ** 2 + 1
    if kind.label == "IP-Adapter Full Face" and tokens != FULL_FACE_TOKENS:
        raise ScriptError(  # diffusers' attention takes the last 257 tokens as the image's: it must be 257
            f"IP-Adapter {name} (Full Face) takes {FULL_FACE_TOKENS} image tokens (ViT-H/14 at 224 px); the image "
            f"encoder {encoder.path.name} gives {tokens}"
        )
    if kind.width != width:
        what = "hidden states" if kind.hidden_states else "image embeddings"
        raise ScriptError(
            f"IP-Adapter {name} ({kind.label}) expects {kind.width}-wide {what}; the image encoder "
            f"{encoder.path.name} gives {width} (put the encoder it was trained with in models/clip_vision)"
        )
    return kind


def _fits_unet(name: str, state: dict, unet: Any) -> None:
    cross = int(unet.config.cross_attention_dim)
    slots = [n for n in unet.attn_processors if not n.endswith("attn1.processor")]
    keys = sorted(k for k in state["ip_adapter"] if k.endswith(".to_k_ip.weight"))
    if len(keys) != len(slots):
        raise ScriptError(
            f"IP-Adapter {name} has {len(keys)} attention layers; this checkpoint has {len(slots)} "
            f"(another model family)"
        )
    k = state["ip_adapter"][keys[0]]
    if k.shape[-1] != cross:
        raise ScriptError(f"IP-Adapter {name} is for {k.shape[-1]}-wide conditioning; this checkpoint's is {cross}")


def _fits_flux(name: str, state: dict, transformer: Any) -> None:
    config = transformer.config
    blocks = int(config.num_layers)
    keys = [k for k in state["ip_adapter"] if k.endswith(".to_k_ip.weight")]
    if len(keys) != blocks:
        raise ScriptError(
            f"IP-Adapter {name} has {len(keys)} double-block layers; this FLUX checkpoint has {blocks} (another model)"
        )
    want = (int(transformer.inner_dim), int(config.joint_attention_dim))
    got = tuple(state["ip_adapter"]["0.to_k_ip.weight"].shape)
    tokens = 16 if state["image_proj"]["proj.weight"].shape[0] == 65536 else 4  # diffusers' rule (v2: 16)
    if got != want or state["image_proj"]["proj.weight"].shape[0] != tokens * want[1]:
        raise ScriptError(f"IP-Adapter {name} is for a {got[0]}-wide FLUX transformer; this one is {want[0]}")
