"""The app's interrogator: `interrogate(image, model)` → a prompt for the image (A1111's /sdapi/v1/interrogate).

"clip" is A1111's "Interrogate CLIP": a BLIP caption (blip.py, models/BLIP) followed by the CLIP-ranked best
medium, art movement and flavours (clip_rank.py, models/interrogate), as "<caption>, <medium>, <movement>,
<flavour>, …". With only one of the two models it does what that one can: BLIP alone gives the caption; CLIP
alone gives "<medium> of <subject>, <movement>, <flavours>", its subject list standing in for the caption.
Neither installed → a message naming both folders.

"deepdanbooru" is A1111's anime tagger, a pickled torch port of a TensorFlow model: Easel has no runtime for it and
says so (no pickle is ever loaded)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable

from PIL import Image

from webui.errors import InvalidRequest
from webui.interrogate.blip import FOLDER as BLIP_FOLDER
from webui.interrogate.blip import BlipCaptioner, find_blip
from webui.interrogate.clip_rank import FOLDER as CLIP_FOLDER
from webui.interrogate.clip_rank import ClipRanker, InterrogateError, caption, clip_folders, find_clip

MODELS = ("clip", "deepdanbooru")


class Interrogator:
    def __init__(self, models_dir: Path, get_option: Callable[[str], Any]):
        self.models_dir, self.get_option = models_dir, get_option
        self._lock = threading.Lock()
        self._ranker: tuple[tuple[Path, float], ClipRanker] | None = None
        self._captioner: tuple[tuple[Path, float], BlipCaptioner] | None = None

    def ranker(self) -> ClipRanker:
        path = find_clip(self.models_dir, str(self.get_option("interrogate_clip_model") or ""))
        key = (path, (path / "config.json").stat().st_mtime)
        if self._ranker is None or self._ranker[0] != key:
            self._ranker = None  # let the old model go before the new one loads
            self._ranker = (key, ClipRanker.load(path))
        return self._ranker[1]

    def captioner(self, path: Path) -> BlipCaptioner:
        key = (path, (path / "config.json").stat().st_mtime)
        if self._captioner is None or self._captioner[0] != key:
            self._captioner = None
            self._captioner = (key, BlipCaptioner.load(path))
        return self._captioner[1]

    def interrogate(self, image: Image.Image, model: str = "clip") -> str:
        name = str(model or "").strip().lower()
        if name == "deepdanbooru":
            raise InvalidRequest(
                "deepdanbooru is not available in Easel (A1111's model is a pickled torch port of a "
                'TensorFlow tagger); use model "clip"'
            )
        if name != "clip":
            raise InvalidRequest(f"unknown interrogate model {str(model)[:40]!r}; choose one of {list(MODELS)}")
        opt = self.get_option
        with self._lock:
            try:
                return self._interrogate(image)
            finally:
                if not opt("interrogate_keep_models_in_memory"):
                    self._ranker = self._captioner = None

    def _interrogate(self, image: Image.Image) -> str:
        opt = self.get_option
        blip = find_blip(self.models_dir, str(opt("interrogate_blip_model") or ""))
        has_clip = bool(clip_folders(self.models_dir)) or bool(str(opt("interrogate_clip_model") or "").strip())
        if blip is None and not has_clip:
            raise InterrogateError(
                f"Interrogate CLIP needs a caption model, a CLIP model or both: put a transformers BLIP captioning "
                f"folder (e.g. Salesforce/blip-image-captioning-base saved with save_pretrained: config.json, "
                f"model.safetensors, tokenizer and preprocessor files) in models/{BLIP_FOLDER}/, and a transformers "
                f"CLIPModel folder (e.g. openai/clip-vit-large-patch14) in models/{CLIP_FOLDER}/"
            )
        text = ""
        if blip is not None:
            text = self.captioner(blip).caption(
                image,
                num_beams=int(opt("interrogate_clip_num_beams")),
                min_length=int(opt("interrogate_clip_min_length")),
                max_length=int(opt("interrogate_clip_max_length")),
            )
            if not opt("interrogate_keep_models_in_memory"):
                self._captioner = None  # A1111 moves BLIP off the device before CLIP runs
        if not has_clip:
            return text
        ranks = self.ranker().rank(image, int(opt("interrogate_clip_dict_limit")))
        return caption(ranks, with_ranks=bool(opt("interrogate_return_ranks")), subject=text or None)
