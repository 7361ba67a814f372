"""The caption half of A1111's "Interrogate CLIP": a BLIP captioning model from models/BLIP/<name>/ writes a sentence
about the image, which the CLIP ranking (clip_rank.py) then extends with mediums, movements and flavours.

A1111 runs Salesforce's original BLIP code on a `model_base_caption_capfilt_large.pth` pickle; Easel runs the same
model family through transformers (BlipForConditionalGeneration + its processor), from a folder as
`save_pretrained` writes it (e.g. Salesforce/blip-image-captioning-base or -large: config.json with model_type
"blip", model.safetensors, the tokenizer files, preprocessor_config.json or processor_config.json). Weights load
only from safetensors, nothing is unpickled, and nothing is fetched from the hub. The image processor is
transformers' PIL one (its default BLIP processor needs torchvision, which Easel never installs).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from webui.errors import InvalidRequest
from webui.interrogate.clip_rank import model_folders

FOLDER = "BLIP"  # A1111's models/BLIP


class CaptionError(InvalidRequest):
    """No usable BLIP model, or an unusable one; the message names the folder."""


def blip_folders(models_dir: Path) -> list[Path]:
    """Folders of models/BLIP whose config.json is a transformers BLIP config (model_type "blip")."""
    return model_folders(models_dir / FOLDER, "blip")


def find_blip(models_dir: Path, name: str) -> Path | None:
    """The folder named `name` (an error if it isn't there), else the first one, else None (no BLIP installed)."""
    folders = blip_folders(models_dir)
    wanted = str(name or "").strip()
    if wanted:
        for d in folders:
            if d.name == wanted:
                return d
        raise CaptionError(
            f"no BLIP model {wanted!r} in models/{FOLDER} (found: {', '.join(d.name for d in folders) or 'none'})"
        )
    return folders[0] if folders else None


@dataclass
class BlipCaptioner:
    path: Path
    model: Any
    tokenizer: Any
    image_processor: Any

    @classmethod
    def load(cls, path: Path) -> "BlipCaptioner":
        from transformers import AutoTokenizer, BlipForConditionalGeneration, BlipImageProcessorPil

        try:
            model = BlipForConditionalGeneration.from_pretrained(
                str(path), local_files_only=True, use_safetensors=True
            ).eval()
            tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            image_processor = BlipImageProcessorPil.from_pretrained(str(path), local_files_only=True)
        except Exception as e:  # no safetensors weights, no tokenizer files, a broken config: say which folder
            raise CaptionError(
                f"can't load the BLIP model in models/{FOLDER}/{path.name} (transformers "
                f"BlipForConditionalGeneration with safetensors weights, its tokenizer and "
                f"preprocessor files): {type(e).__name__}"
            ) from None
        return cls(path, model, tokenizer, image_processor)

    @torch.no_grad()
    def caption(self, image: Image.Image, *, num_beams: int, min_length: int, max_length: int) -> str:
        """A1111's BLIP call: beam search with min/max lengths in tokens (options interrogate_clip_*)."""
        pixels = self.image_processor(images=[image.convert("RGB")], return_tensors="pt").pixel_values
        max_length = max(1, max_length)
        ids = self.model.generate(
            pixel_values=pixels.to(self.model.dtype),
            num_beams=max(1, num_beams),
            min_length=min(max(0, min_length), max_length),
            max_length=max_length,
        )
        return str(self.tokenizer.decode(ids[0], skip_special_tokens=True)).strip()
