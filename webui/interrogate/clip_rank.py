"""The CLIP half of A1111's "Interrogate CLIP": a CLIP model ranks Easel's own word lists (wordlists/: subjects,
mediums, art movements, flavours) against the image, and the best of each extend the caption (see caption()).

Why a separate CLIP: ranking an image against text needs CLIP's *vision* tower and both
projections; a Stable Diffusion checkpoint holds only the text tower (SD 1.x without its projection), so the loaded
checkpoint can't do it. A full CLIP (transformers' CLIPModel folder: config.json + weights, e.g. openai/
clip-vit-large-patch14 saved with save_pretrained) in models/interrogate/ is used, through transformers; its own
tokenizer files when the folder has them, else the CLIP BPE vocabulary Easel ships (webui/models/tokenizer.py). The
caption in front comes from a BLIP model in models/BLIP (blip.py) when one is installed; without it the subject
list stands in for the caption.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from webui.errors import InvalidRequest

WORDLISTS = Path(__file__).resolve().parent / "wordlists"
CATEGORIES = ("subjects", "mediums", "movements", "flavors")
FOLDER = "interrogate"
MAX_CONFIG_BYTES = 1 << 20


class InterrogateError(InvalidRequest):
    """No usable CLIP model (the message names the folder), or an unusable one."""


def word_list(name: str, limit: int) -> list[str]:
    lines = (WORDLISTS / f"{name}.txt").read_text(encoding="utf-8").splitlines()
    return [w.strip() for w in lines if w.strip()][:limit]


def model_folders(root: Path, model_type: str) -> list[Path]:
    """Folders under `root` whose config.json is a transformers config of `model_type` (read only when small)."""
    out = []
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        cfg = d / "config.json"
        try:
            if (
                d.is_dir()
                and cfg.is_file()
                and cfg.stat().st_size < MAX_CONFIG_BYTES
                and json.loads(cfg.read_text(encoding="utf-8")).get("model_type") == model_type
            ):
                out.append(d)
        except (OSError, ValueError, AttributeError):
            continue
    return out


def clip_folders(models_dir: Path) -> list[Path]:
    """Folders of models/interrogate holding a transformers CLIP config (model_type "clip")."""
    return model_folders(models_dir / FOLDER, "clip")


def find_clip(models_dir: Path, name: str) -> Path:
    folders = clip_folders(models_dir)
    wanted = str(name or "").strip()
    if wanted:
        for d in folders:
            if d.name == wanted:
                return d
        raise InterrogateError(
            f"no CLIP model {wanted!r} in models/{FOLDER} (found: {', '.join(d.name for d in folders) or 'none'})"
        )
    if not folders:
        raise InterrogateError(
            f"Interrogate CLIP needs a CLIP model: put a transformers CLIPModel folder (config.json "
            f"and model.safetensors, e.g. openai/clip-vit-large-patch14) in models/{FOLDER}/"
        )
    return folders[0]


@dataclass
class ClipRanker:
    """One loaded CLIP model with its word lists' text features (computed once)."""

    path: Path
    model: Any
    tokenizer: Any
    processor: Any
    features: dict[tuple[str, int], torch.Tensor] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> "ClipRanker":
        from transformers import CLIPImageProcessorPil, CLIPModel, CLIPTokenizer

        try:
            model = CLIPModel.from_pretrained(str(path), local_files_only=True, use_safetensors=True).eval()
        except Exception as e:  # a folder without safetensors weights, a broken config: say which
            raise InterrogateError(
                f"can't load the CLIP model in models/{FOLDER}/{path.name} (transformers "
                f"CLIPModel, safetensors weights): {type(e).__name__}"
            ) from None
        if (path / "vocab.json").is_file() and (path / "merges.txt").is_file():
            tokenizer = CLIPTokenizer.from_pretrained(str(path), local_files_only=True)
        else:
            from webui.models.tokenizer import load_clip_tokenizer

            tokenizer = load_clip_tokenizer()
        size = int(model.config.vision_config.image_size)
        processor = CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
        return cls(path, model, tokenizer, processor)

    @torch.no_grad()
    def text_features(self, category: str, limit: int) -> tuple[list[str], torch.Tensor]:
        words = word_list(category, limit)
        key = (category, limit)
        if key not in self.features:
            feats = []
            max_len = int(self.model.config.text_config.max_position_embeddings)
            for i in range(0, len(words), 64):
                tok = self.tokenizer(
                    words[i : i + 64], padding="max_length", truncation=True, max_length=max_len, return_tensors="pt"
                )
                out = self.model.get_text_features(input_ids=tok.input_ids, attention_mask=tok.attention_mask)
                feats.append(_tensor(out))
            self.features[key] = torch.nn.functional.normalize(torch.cat(feats).float(), dim=-1)
        return words, self.features[key]

    @torch.no_grad()
    def image_features(self, image: Image.Image) -> torch.Tensor:
        pixels = self.processor(images=[image.convert("RGB")], return_tensors="pt").pixel_values
        out = self.model.get_image_features(pixel_values=pixels.to(self.model.dtype))
        return torch.nn.functional.normalize(_tensor(out).float(), dim=-1)[0]

    def rank(self, image: Image.Image, limit: int) -> dict[str, list[tuple[str, float]]]:
        """Each category's words, best first, with their cosine similarity to the image."""
        img = self.image_features(image)
        out = {}
        for category in CATEGORIES:
            words, feats = self.text_features(category, limit)
            sims = (feats @ img).numpy()
            order = np.argsort(-sims, kind="stable")
            out[category] = [(words[i], float(sims[i])) for i in order]
        return out


def _tensor(out: Any) -> torch.Tensor:
    """get_*_features returns a tensor, or (transformers 5) an output whose pooled value is the projection."""
    if isinstance(out, torch.Tensor):
        return out
    value = getattr(out, "pooler_output", None)
    return value if value is not None else out[0]


def caption(
    ranks: dict[str, list[tuple[str, float]]], *, flavors: int = 3, with_ranks: bool = False, subject: str | None = None
) -> str:
    """A1111's prompt shape: with a BLIP caption as `subject`, "<caption>, <medium>, <movement>, <flavours>"; without
    one, "<medium> of <subject>, <movement>, <flavours>" from the subject list; with_ranks writes "(word:0.123)"."""

    def show(item: tuple[str, float]) -> str:
        return f"({item[0]}:{item[1]:.3f})" if with_ranks else item[0]

    if subject:
        parts = [subject, show(ranks["mediums"][0])]
    else:
        parts = [f"{show(ranks['mediums'][0])} of {show(ranks['subjects'][0])}"]
    parts.append(show(ranks["movements"][0]))
    parts += [show(f) for f in ranks["flavors"][:flavors]]
    return ", ".join(parts)
