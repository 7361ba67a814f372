"""Separate model parts for SD3/FLUX transformer-only checkpoints: text encoders in models/text_encoder/ (Forge's
folder; models/clip/ as ComfyUI's is accepted too) and VAEs in models/VAE/, recognised from their tensor names and
picked automatically when exactly one fits the transformer. Anything else is a ModelLoadError that says which file to
put where."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import Any

import torch

from webui.errors import ModelLoadError

T5_MARK = "encoder.block.0.layer.0.SelfAttention.q.weight"
CLIP_MARK = "embeddings.token_embedding.weight"
T5_TOKENIZER_DIR = Path(__file__).resolve().parent / "configs" / "t5-tokenizer"
PART_NAMES = {
    "clip_l": "CLIP-L (clip_l.safetensors)",
    "clip_g": "CLIP-G (clip_g.safetensors)",
    "t5": "T5-XXL (t5xxl_fp16.safetensors)",
    "vae": "VAE (ae.safetensors for FLUX, the SD3 VAE for SD3)",
}


@dataclass(frozen=True)
class Part:
    path: Path
    kind: str  # "clip", "t5" or "vae"
    width: int  # hidden size (CLIP, T5) or latent channels (VAE)
    projection: int = 0  # CLIP text_projection output, 0 without one
    prefix: str = ""


VAE_PREFIXES = ("", "first_stage_model.", "vae.")  # a separate file; Stability's all-in-one; ComfyUI's FLUX saves


def find_parts(path: Path, shapes: dict[str, tuple[int, ...]]) -> list[Part]:
    """Every text encoder and VAE in a file, each with its key prefix: one in a separate part file, several in an
    all-in-one checkpoint (`text_encoders.clip_l.transformer.`, `text_encoders.t5xxl.transformer.`, `vae.`, …)."""
    found = []
    for k, shape in shapes.items():
        if k.endswith(T5_MARK):
            p = k[: -len(T5_MARK)]
            emb = shapes.get(p + "shared.weight") or shapes.get(p + "encoder.embed_tokens.weight")
            found.append(Part(path, "t5", emb[1] if emb else shape[1], prefix=p))
        elif k.endswith(CLIP_MARK) and "vision" not in k:
            p = k[: -len(CLIP_MARK)]
            p = p[: -len("text_model.")] if p.endswith("text_model.") else p
            proj = shapes.get(p + "text_projection.weight")
            found.append(Part(path, "clip", shape[1], proj[0] if proj else 0, prefix=p))
    for p in VAE_PREFIXES:
        if p + "encoder.conv_out.weight" in shapes and p + "decoder.conv_in.weight" in shapes:
            found.append(Part(path, "vae", shapes[p + "decoder.conv_in.weight"][1], prefix=p))
    return found


def classify(path: Path) -> Part | None:
    from webui.models.loader import read_header

    try:
        shapes, _ = read_header(path)
    except ModelLoadError:
        return None
    found = find_parts(path, shapes)
    return found[0] if len(found) == 1 else None


PART_FOLDERS = ("text_encoder", "clip", "VAE")


def scan(models_root: Path) -> list[Part]:
    found = []
    for folder in (models_root / name for name in PART_FOLDERS):
        if folder.is_dir():
            found += [part for f in sorted(folder.rglob("*.safetensors")) if (part := classify(f)) is not None]
    return found


def module_files(models_root: Path) -> list[str]:
    """The file names Forge's "VAE / Text Encoder" selector offers: every .safetensors in models/VAE/,
    models/text_encoder/ and models/clip/ (by name, as `chosen` matches them), sorted, without repeats."""
    names = {
        f.name
        for folder in PART_FOLDERS
        if (models_root / folder).is_dir()
        for f in (models_root / folder).rglob("*.safetensors")
        if f.is_file()
    }
    return sorted(names, key=str.lower)


def _one(candidates: list[Part], role: str, label: str, models_root: Path, found: list[Part]) -> Part:
    if len(candidates) == 1:
        return candidates[0]
    folder = "models/VAE/" if role == "vae" else "models/text_encoder/ (or models/clip/)"
    if not candidates:
        seen = ", ".join(f"{p.path.name} ({p.kind}, width {p.width})" for p in found if p.kind == role.split("_")[0])
        raise ModelLoadError(
            f"{label} needs a {PART_NAMES[role]} that fits it: put one in {folder}"
            + (f"; found only others: {seen}" if seen else "")
        )
    names = ", ".join(p.path.name for p in candidates)
    raise ModelLoadError(
        f"{label}: more than one {PART_NAMES[role]} fits ({names}); keep one of them in {folder} "
        "(choosing between several is not supported yet)"
    )


def named(paths: list[Path], modules: tuple[str, ...] | list[str]) -> list[Path]:
    """The files named by Forge's `forge_additional_modules` (file names, with or without a folder or extension)."""
    # PureWindowsPath splits on both separators: Forge on Windows sends C:\...\clip_l.safetensors
    names = {PureWindowsPath(str(m)).name for m in modules} | {PureWindowsPath(str(m)).stem for m in modules}
    return [p for p in paths if p.name in names or p.stem in names]


def chosen(found: list[Part], modules: tuple[str, ...] | list[str]) -> list[Part]:
    """The parts named by Forge's `forge_additional_modules`."""
    picked = set(named([p.path for p in found], modules))
    return [p for p in found if p.path in picked]


def vae_channels(path: Path) -> int | None:
    """The latent channels of the VAE in a file (a separate VAE, or inside a checkpoint), None without one or for a
    file whose header can't be read without unpickling (.pt/.ckpt)."""
    from webui.models.loader import read_header

    if path.suffix.lower() != ".safetensors":
        return None
    try:
        shapes, _ = read_header(path)
    except ModelLoadError:
        return None
    return next((p.width for p in find_parts(path, shapes) if p.kind == "vae"), None)


def pick(
    needs: dict[str, Any],
    models_root: Path,
    label: str,
    inside: list[Part] | None = None,
    modules: tuple[str, ...] | list[str] = (),
) -> dict[str, Part]:
    """The parts a transformer needs (family_flux.needs / family_sd3.needs), one per role. Files chosen by name
    (`modules`, Forge's top-bar "VAE / Text Encoder" choice) come first, then parts `inside` an all-in-one
    checkpoint; the folders are searched only for the roles still open, and must then hold exactly one that fits."""
    if modules:
        picked = chosen(scan(models_root), modules)
        unknown = [m for m in modules if not chosen(picked, [m])]
        if unknown:
            raise ModelLoadError(
                f"{label}: module(s) not found in models/text_encoder/, models/clip/ or models/VAE/: "
                + ", ".join(map(str, unknown))
            )
        return pick(needs, models_root, label, picked + list(inside or []))
    fits = pick_inside(needs, inside or [])
    rest = {r: w for r, w in needs.items() if r not in fits and not (r == "clip_pair" and "clip_g" in fits)}
    if not rest:
        return fits
    found = scan(models_root)
    clips = [p for p in found if p.kind == "clip"]
    out = dict(fits)
    for role in ("t5", "vae"):
        if role in rest:
            out[role] = _one(
                [p for p in found if p.kind == role and p.width == rest[role]], role, label, models_root, found
            )
    if "clip_l" in rest:
        out["clip_l"] = _one([p for p in clips if p.width == rest["clip_l"]], "clip_l", label, models_root, found)
    elif "clip_pair" in rest:  # SD3: the L/G pair whose projections add up to the pooled width; the narrower tower is L
        pairs = [
            (a, b)
            for a in clips
            for b in clips
            if a.width < b.width and a.projection and b.projection and a.projection + b.projection == rest["clip_pair"]
        ]
        if len(pairs) != 1:
            role = "clip_l" if not any(p.width <= 768 for p in clips) else "clip_g"
            _one([] if not pairs else [p for pair in pairs for p in pair], role, label, models_root, found)
        out["clip_l"], out["clip_g"] = pairs[0]
    return out


def pick_inside(needs: dict[str, Any], inside: list[Part]) -> dict[str, Part]:
    """The roles an all-in-one checkpoint's own parts fill (those that fit; none may be ambiguous)."""
    out: dict[str, Part] = {}
    for role, kind in (("t5", "t5"), ("vae", "vae"), ("clip_l", "clip")):
        if role in needs:
            fit = [p for p in inside if p.kind == kind and p.width == needs[role]]
            if fit:  # chosen modules are listed before the checkpoint's own parts
                out[role] = fit[0]
    if "clip_pair" in needs:
        clips = [p for p in inside if p.kind == "clip"]
        pairs = [
            (a, b)
            for a in clips
            for b in clips
            if a.width < b.width and a.projection and b.projection and a.projection + b.projection == needs["clip_pair"]
        ]
        if pairs:
            out["clip_l"], out["clip_g"] = pairs[0]
    return out


def _read(part: Part) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The part's tensors without their prefix (only those: an all-in-one file is not read whole per part), and its
    `easel.config` (in an all-in-one file, the entry under `parts` for the part's prefix)."""
    from safetensors import safe_open

    with safe_open(str(part.path), framework="pt") as f:
        meta = dict(f.metadata() or {})
        state = {k[len(part.prefix) :]: f.get_tensor(k) for k in f.keys() if k.startswith(part.prefix)}
    extra = json.loads(meta["easel.config"]) if "easel.config" in meta else {}
    if "parts" in extra or "transformer" in extra:
        extra = extra.get("parts", {}).get(part.prefix, {})
    return state, extra


def load_clip(part: Part, template: dict[str, Any], *, projection: bool, dtype: torch.dtype):
    """A CLIP text tower in transformers names (clip_l/clip_g files), shaped by its tensors."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection
    from transformers.initialization import no_init_weights

    state, extra = _read(part)
    state = {k[len("text_model.") :] if k.startswith("text_model.") else k: v for k, v in state.items()}
    vocab, hidden = state[CLIP_MARK].shape
    layers = len({m.group(1) for k in state if (m := re.match(r"encoder\.layers\.(\d+)\.", k))})
    cfg = dict(
        template,
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        max_position_embeddings=state["embeddings.position_embedding.weight"].shape[0],
        intermediate_size=state["encoder.layers.0.mlp.fc1.weight"].shape[0],
        projection_dim=part.projection or hidden,
        num_attention_heads=max(1, hidden // 64),
    )
    cfg.update(extra)
    cls = CLIPTextModelWithProjection if projection else CLIPTextModel
    with no_init_weights():  # every weight comes from the file (_load refuses missing ones): no random init
        model = cls(CLIPTextConfig.from_dict(cfg))
    if projection and "text_projection.weight" not in state:  # an L file saved without it: identity, as ComfyUI
        state["text_projection.weight"] = torch.eye(hidden)
    if not projection:
        state.pop("text_projection.weight", None)
    if any(k.startswith("text_model.") for k in model.state_dict()):  # transformers 5 flattens CLIPTextModel only
        state = {k if k.startswith("text_projection") else "text_model." + k: v for k, v in state.items()}
    _load(model, state, part)
    return model.to(dtype).eval()


def load_t5(part: Part, template: dict[str, Any], *, dtype: torch.dtype):
    from transformers import T5Config, T5EncoderModel
    from transformers.initialization import no_init_weights

    state, extra = _read(part)
    if "shared.weight" not in state:
        state["shared.weight"] = state["encoder.embed_tokens.weight"]
    vocab, d_model = state["shared.weight"].shape
    buckets, heads = state["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"].shape
    cfg = dict(
        template,
        vocab_size=vocab,
        d_model=d_model,
        num_heads=heads,
        relative_attention_num_buckets=buckets,
        d_kv=state[T5_MARK].shape[0] // heads,
        d_ff=state["encoder.block.0.layer.1.DenseReluDense.wo.weight"].shape[1],
        num_layers=len({m.group(1) for k in state if (m := re.match(r"encoder\.block\.(\d+)\.", k))}),
    )
    cfg.update(extra)
    with no_init_weights():
        model = T5EncoderModel(T5Config.from_dict(cfg))
    state.setdefault("encoder.embed_tokens.weight", state["shared.weight"])
    _load(model, state, part)
    return model.to(dtype).eval()


def _load(model, state: dict[str, torch.Tensor], part: Part) -> None:
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelLoadError(
            f"{part.path.name}: the weights do not fit a {part.kind.upper()} text encoder "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )


def load_vae(part: Part, cfg_template: dict[str, Any], cache_root: Path, *, dtype: torch.dtype):
    """An LDM-layout VAE file (BFL's ae.safetensors, SD3's VAE) through diffusers' single-file converter."""
    from webui.models.loader import vae_from_single_file

    state, _ = _read(part)
    levels = sorted({int(m.group(1)) for k in state if (m := re.match(r"encoder\.down\.(\d+)\.", k))})
    cfg = dict(
        cfg_template,
        latent_channels=part.width,
        in_channels=state["encoder.conv_in.weight"].shape[1],
        out_channels=state["decoder.conv_out.weight"].shape[0],
        block_out_channels=[state[f"encoder.down.{i}.block.0.conv2.weight"].shape[0] for i in levels],
        layers_per_block=len({m.group(1) for k in state if (m := re.match(r"encoder\.down\.0\.block\.(\d+)\.", k))}),
        down_block_types=["DownEncoderBlock2D"] * len(levels),
        up_block_types=["UpDecoderBlock2D"] * len(levels),
        use_quant_conv="quant_conv.weight" in state,
        use_post_quant_conv="post_quant_conv.weight" in state,
    )
    return vae_from_single_file(state, cfg, cache_root, dtype=dtype, name=part.path.name)


def t5_tokenizer(max_length: int):
    """T5's SentencePiece tokenizer from the data vendored in configs/t5-tokenizer/ (Google's T5 vocabulary,
    Apache-2.0: see its NOTICE), as FLUX.1 and SD 3/3.5 use it; `max_length` is the T5 sequence length."""
    from transformers import T5TokenizerFast

    return T5TokenizerFast.from_pretrained(str(T5_TOKENIZER_DIR), model_max_length=max_length, local_files_only=True)
