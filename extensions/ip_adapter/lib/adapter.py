"""IP-Adapter files and image encoders, and one pipeline call with adapters applied through diffusers' own
`load_ip_adapter` / `unload_ip_adapter` (undone after the call: `PipelineCall.after`).

Files: models/ipadapter/*.safetensors (or models/ControlNet/ip-adapter*.safetensors) in the layout IP-Adapter
releases use (`image_proj.*` and `ip_adapter.<n>.to_k_ip/to_v_ip.weight`, the layout diffusers reads); image
encoders: transformers CLIPVisionModelWithProjection folders (config.json + model.safetensors) in models/clip_vision,
or single .safetensors files there in the same key layout (what ComfyUI and Forge keep in models/clip_vision, e.g.
CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors: h94/IP-Adapter's image_encoder weights renamed), their config read
from the tensor shapes (encoder_config).
The image embeddings are computed here and passed as `ip_adapter_image_embeds`, so the pipeline needs no image
encoder of its own. Pickled `.bin`/`.pth` adapters are not read."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from webui.extensions.api import ScriptError

ADAPTER_DIR, ENCODER_DIR = "ipadapter", "clip_vision"
PICKLES = (".bin", ".pth", ".pt", ".ckpt")


def adapter_files(models_dir: Path) -> list[Path]:
    """models/ipadapter/*.safetensors, then models/ControlNet/ip-adapter*.safetensors (sd-webui-controlnet keeps
    them there)."""
    out = []
    for folder, pattern in (
        (models_dir / ADAPTER_DIR, "*.safetensors"),
        (models_dir / "ControlNet", "ip-adapter*.safetensors"),
    ):
        out += sorted(p for p in folder.glob(pattern) if p.is_file()) if folder.is_dir() else []
    return out


def find_adapter(models_dir: Path, name: str) -> Path:
    """By file name or stem; an sd-webui-controlnet title "name [hash]" too. Only files listed in the folder."""
    wanted = str(name or "").split(" [")[0].strip()
    for p in adapter_files(models_dir):
        if wanted in (p.name, p.stem):
            return p
    stem = Path(wanted).stem if Path(wanted).suffix.lower() in PICKLES else wanted
    for folder in (models_dir / ADAPTER_DIR, models_dir / "ControlNet"):
        for suffix in PICKLES:  # h94's .bin and sd-webui-controlnet's .pth downloads: say why they aren't used
            if stem and stem == Path(stem).name and (folder / f"{stem}{suffix}").is_file():
                raise ScriptError(
                    f"IP-Adapter {stem}{suffix} is a pickle, which Easel does not load: use its .safetensors "
                    f"release (or a conversion) in models/{ADAPTER_DIR}"
                )
    raise ScriptError(
        f"IP-Adapter model {str(name)[:80]!r} is missing: put it (a .safetensors IP-Adapter, e.g. "
        f"ip-adapter_sd15.safetensors) in models/{ADAPTER_DIR}"
    )


def encoder_paths(models_dir: Path) -> list[Path]:
    """The image encoders of models/clip_vision: transformers folders (a vision config.json) and .safetensors files."""
    root = models_dir / ENCODER_DIR
    out = []
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        try:
            if d.is_file() and d.suffix.lower() == ".safetensors":
                out.append(d)
            elif (d / "config.json").is_file() and "vision" in json.loads((d / "config.json").read_text()).get(
                "model_type", ""
            ).lower():
                out.append(d)
        except (OSError, ValueError, AttributeError):
            continue
    return out


def find_encoder(models_dir: Path, name: str) -> Path:
    found = encoder_paths(models_dir)
    wanted = str(name or "").strip()
    for d in found:
        if not wanted or d.name == wanted:
            return d
    raise ScriptError(
        f"IP-Adapter needs a CLIP image encoder: put a transformers CLIPVisionModelWithProjection "
        f"folder (config.json, model.safetensors) or its single .safetensors file (e.g. "
        f"CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors) in models/{ENCODER_DIR}"
        + (f" named {wanted!r}" if wanted else "")
    )


# Facts of the released CLIP vision towers that shapes can't tell: heads and activation by width (OpenAI's ViT-B/16
# and ViT-L/14 use quick_gelu; LAION's OpenCLIP ViT-H/14 and ViT-bigG/14, IP-Adapter's encoders, use gelu)
KNOWN_WIDTHS = {768: (12, "quick_gelu"), 1024: (16, "quick_gelu"), 1280: (16, "gelu"), 1664: (16, "gelu")}
PREFIX = "vision_model."


def encoder_config(path: Path) -> Any:
    """A CLIPVisionConfig for a single-file encoder in transformers' key layout, from its tensor shapes (width,
    patch, image size, layers, MLP width, projection); heads and activation from KNOWN_WIDTHS (else 64-wide heads
    and gelu). ScriptError when the file is not such an encoder."""
    import math

    from safetensors import safe_open
    from transformers import CLIPVisionConfig

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            keys = set(f.keys())
            shape = {
                k: list(f.get_slice(k).get_shape())
                for k in (
                    f"{PREFIX}embeddings.patch_embedding.weight",
                    f"{PREFIX}embeddings.position_embedding.weight",
                    f"{PREFIX}encoder.layers.0.mlp.fc1.weight",
                    "visual_projection.weight",
                )
            }
    except Exception as e:  # not safetensors, or a key missing: not a transformers CLIP vision file
        raise ScriptError(
            f"{path.name} in models/{ENCODER_DIR} is not a CLIP vision encoder in transformers' layout "
            f"(vision_model.*, visual_projection): {type(e).__name__}"
        ) from None
    hidden, _, patch, _ = shape[f"{PREFIX}embeddings.patch_embedding.weight"]
    side = math.isqrt(shape[f"{PREFIX}embeddings.position_embedding.weight"][0] - 1)
    layers = len({k.split(".")[3] for k in keys if k.startswith(f"{PREFIX}encoder.layers.")})
    heads, act = KNOWN_WIDTHS.get(hidden, (max(1, hidden // 64), "gelu"))
    return CLIPVisionConfig(
        hidden_size=hidden,
        intermediate_size=shape[f"{PREFIX}encoder.layers.0.mlp.fc1.weight"][0],
        num_hidden_layers=layers,
        num_attention_heads=heads,
        image_size=side * patch,
        patch_size=patch,
        projection_dim=shape["visual_projection.weight"][0],
        hidden_act=act,
    )


def fitting_encoder(models_dir: Path, kind: Any) -> Path | None:
    """The first image encoder of models/clip_vision that gives what an adapter of this kind (kinds.Layout) takes:
    its hidden width (Plus, Full Face) or projection width; None when none does."""
    for path in encoder_paths(models_dir):
        try:
            if path.is_file():
                config = encoder_config(path)
                hidden, projection = config.hidden_size, config.projection_dim
            else:
                raw = json.loads((path / "config.json").read_text())
                raw = raw.get("vision_config", raw)
                hidden, projection = raw.get("hidden_size"), raw.get("projection_dim")
        except (ScriptError, OSError, ValueError, AttributeError):
            continue
        if (hidden if kind.hidden_states else projection) == kind.width:
            return path
    return None


# XLabs' FLUX file (`ip_adapter_proj_model.*`, `double_blocks.<i>.processor.ip_adapter_double_stream_k/v_proj.*`)
# renamed to the layout the other files have, as diffusers' FluxIPAdapterMixin.load_ip_adapter renames it when it
# reads the file itself (done here so the weights are read once, cached and checked like the others)
XLABS_HEADS = {"ip_adapter_proj_model": "image_proj", "double_blocks": "ip_adapter"}


def _xlabs_name(rest: str) -> str:
    return (
        rest.replace("processor.", "")
        .replace("ip_adapter_double_stream_k_proj", "to_k_ip")
        .replace("ip_adapter_double_stream_v_proj", "to_v_ip")
    )


def read_adapter(path: Path) -> dict[str, dict[str, torch.Tensor]]:
    from safetensors import safe_open

    out: dict[str, dict[str, torch.Tensor]] = {"image_proj": {}, "ip_adapter": {}}
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            for key in f.keys():
                head, _, rest = key.partition(".")
                if head in XLABS_HEADS:
                    head, rest = XLABS_HEADS[head], _xlabs_name(rest)
                if head in out:
                    out[head][rest] = f.get_tensor(key)
    except Exception as e:
        raise ScriptError(f"{path.name} is not a readable safetensors file ({type(e).__name__})") from None
    if not out["image_proj"] or not out["ip_adapter"]:
        raise ScriptError(f"{path.name} is not an IP-Adapter (no image_proj.* / ip_adapter.* weights)")
    return out


@dataclass
class Encoder:
    path: Path
    model: Any
    processor: Any

    @classmethod
    def load(cls, path: Path) -> "Encoder":
        from transformers import CLIPImageProcessorPil, CLIPVisionModelWithProjection

        try:
            if path.is_file():
                from safetensors.torch import load_file

                config = encoder_config(path)
                state = load_file(str(path))
                with torch.device("meta"):  # the names the model has, without allocating it
                    expected = set(CLIPVisionModelWithProjection(config).state_dict())
                if set(state) != expected:
                    raise ScriptError(
                        f"{path.name} in models/{ENCODER_DIR} doesn't match a CLIP vision encoder of "
                        f"its shapes ({len(expected - set(state))} weights missing, "
                        f"{len(set(state) - expected)} unexpected)"
                    )
                model = CLIPVisionModelWithProjection.from_pretrained(None, config=config, state_dict=state).eval()
            else:
                model = CLIPVisionModelWithProjection.from_pretrained(
                    str(path), local_files_only=True, use_safetensors=True
                ).eval()
        except ScriptError:
            raise
        except Exception as e:
            raise ScriptError(
                f"can't load the image encoder models/{ENCODER_DIR}/{path.name}: {type(e).__name__}"
            ) from None
        size = int(model.config.image_size)
        return cls(
            path, model, CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
        )

    @property
    def dim(self) -> int:
        return int(self.model.config.projection_dim)

    @torch.no_grad()
    def embed(self, image: Image.Image) -> torch.Tensor:
        pixels = self.processor(images=[image.convert("RGB")], return_tensors="pt").pixel_values
        return self.model(pixel_values=pixels).image_embeds.float()  # [1, dim]

    @torch.no_grad()
    def embed_pair(self, image: Image.Image, hidden_states: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(conditional, unconditional) input of an adapter, as diffusers' `encode_image` makes them: the projected
        image_embeds [1, dim] and zeros, or (Plus / Full Face) the penultimate hidden states [1, tokens, width] of
        the image and of a zero image."""
        if not hidden_states:
            e = self.embed(image)
            return e, torch.zeros_like(e)
        pixels = self.processor(images=[image.convert("RGB")], return_tensors="pt").pixel_values
        both = self.model(pixel_values=torch.cat([pixels, torch.zeros_like(pixels)]), output_hidden_states=True)
        cond, uncond = both.hidden_states[-2].float().chunk(2)
        return cond, uncond


def load(call: Any, adapters: list[dict], flux: bool = False) -> Any:
    """Load the adapters into the call's pipeline for this call only (undone by `PipelineCall.after`). No image
    encoder is given to the pipeline: the images are embedded here and passed as `ip_adapter_image_embeds`."""
    pipe = call.pipeline
    if not hasattr(pipe, "load_ip_adapter"):
        raise ScriptError("IP-Adapter: this pipeline has no IP-Adapter support in diffusers")
    no_encoder = {"image_encoder_pretrained_model_name_or_path": None} if flux else {"image_encoder_folder": None}
    try:
        pipe.load_ip_adapter(
            list(adapters), subfolder="", weight_name=[""] * len(adapters), low_cpu_mem_usage=False, **no_encoder
        )
    except (ValueError, KeyError, RuntimeError) as e:
        pipe.unload_ip_adapter()
        raise ScriptError(f"IP-Adapter doesn't fit this checkpoint: {str(e)[:200]}") from None
    # group offloading (--lowvram) is made over the layers present: re-made with the adapter's layers, and again
    # once they are gone (registered first, so it runs after the unload)
    refresh = getattr(call, "refresh_offload", None)
    if refresh is not None:
        call.after(refresh)
    call.after(pipe.unload_ip_adapter)
    denoiser = getattr(pipe, "unet", None) or pipe.transformer
    # diffusers' FLUX loader builds the image projection in torch's default dtype (fp32) but the IP attention at the
    # transformer's: a bf16 transformer (DevicePolicy.flow_dtype on a bf16 CPU) then fails at to_k_ip
    proj = getattr(denoiser, "encoder_hid_proj", None)
    if proj is not None:
        proj.to(dtype=denoiser.dtype)
    if refresh is not None:
        refresh()
    return pipe


def batch_of(kwargs: dict) -> int:
    generators = kwargs.get("generator")
    return len(generators) if isinstance(generators, list) else 1


def apply(call: Any, units: list, adapters: list[dict], embeds: list[tuple]) -> tuple[Any, dict]:
    """A UNet pipeline's call with the adapters, per-unit scale, embeddings (conditional, unconditional: from
    Encoder.embed_pair) and masks."""
    pipe, kwargs = load(call, adapters), dict(call.kwargs)
    set_scales(pipe, units, 0.0)
    n = batch_of(kwargs)
    cfg = float(kwargs.get("guidance_scale", 7.5)) > 1
    out = []
    for cond, uncond in embeds:  # [1, dim] or [1, tokens, width] → [n, 1, …] (one image per adapter)
        pos, neg = (e.repeat(n, *[1] * (e.ndim - 1))[:, None] for e in (cond, uncond))
        out.append((torch.cat([neg, pos]) if cfg else pos).to(pipe.unet.device, pipe.unet.dtype))
    kwargs["ip_adapter_image_embeds"] = out
    if any(u.mask is not None for u in units):
        from diffusers.image_processor import IPAdapterMaskProcessor

        init = kwargs.get("image")
        init = init[0] if isinstance(init, list) else init
        w, h = init.size if isinstance(init, Image.Image) else (kwargs.get("width"), kwargs.get("height"))
        size = (int(kwargs.get("height") or h or 512), int(kwargs.get("width") or w or 512))
        full = [u.mask if u.mask is not None else Image.new("L", (size[1], size[0]), 255) for u in units]
        masks = IPAdapterMaskProcessor().preprocess(full, height=size[0], width=size[1])
        kwargs["cross_attention_kwargs"] = {
            **(kwargs.get("cross_attention_kwargs") or {}),
            "ip_adapter_masks": [m[None, None] if m.ndim == 2 else m[None] for m in masks[:, 0]],
        }
    return pipe, kwargs


def set_scales(pipe: Any, units: list, fraction: float) -> None:
    """Each adapter's scale at this point of the sampling: its weight inside its [start, end) window, else 0 (an
    IP attention output times 0 adds exactly nothing)."""
    scales = [u.scale_at(fraction) for u in units]
    pipe.set_ip_adapter_scale(scales if len(scales) > 1 else scales[0])


def from_controlnet_units(alwayson: Any) -> list[dict]:
    """sd-webui-controlnet's IP-Adapter units (`module: ip-adapter_*`) of a request's `alwayson_scripts.controlnet`
    as this extension's unit dicts, with their position among the ControlNet units. The image may be base64 or
    {"image", "mask"}; the mask also comes as `mask`/`mask_image`/`effective_region_mask`."""
    if not isinstance(alwayson, dict):
        return []
    value = next((v for k, v in alwayson.items() if str(k).lower() == "controlnet"), None)
    args = value.get("args", value) if isinstance(value, dict) else value
    if isinstance(args, dict):
        args = list(args.values())
    if isinstance(args, list) and len(args) == 1 and isinstance(args[0], list):
        args = args[0]
    out = []
    for i, raw in enumerate(args if isinstance(args, list) else []):
        if not (isinstance(raw, dict) and str(raw.get("module") or "").strip().lower().startswith("ip-adapter")):
            continue
        image = raw.get("image", raw.get("input_image"))
        mask = raw.get("mask") or raw.get("mask_image") or raw.get("effective_region_mask")
        if isinstance(image, dict):
            image, mask = image.get("image"), mask or image.get("mask")
        out.append(
            {
                "index": i,
                "enabled": bool(raw.get("enabled", True)),
                "image": image,
                "mask": mask,
                "model": raw.get("model"),
                "weight": raw.get("weight", 1.0),
                "guidance_start": raw.get("guidance_start", 0.0),
                "guidance_end": raw.get("guidance_end", 1.0),
            }
        )
    return out
