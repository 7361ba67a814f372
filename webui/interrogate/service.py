"""The app's interrogator: `interrogate(image, model)` → a prompt for the image (A1111's /sdapi/v1/interrogate).

"clip" ranks Easel's word lists with a CLIP model from models/interrogate (clip_rank.py). "deepdanbooru" is A1111's
anime tagger, a pickled torch port of a TensorFlow model: Easel has no runtime for it and says so."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable

from PIL import Image

from webui.errors import InvalidRequest
from webui.interrogate.clip_rank import ClipRanker, caption, find_clip

MODELS = ("clip", "deepdanbooru")


class Interrogator:
    def __init__(self, models_dir: Path, get_option: Callable[[str], Any]):
        self.models_dir, self.get_option = models_dir, get_option
        self._lock = threading.Lock()
        self._ranker: tuple[tuple[Path, float], ClipRanker] | None = None

    def ranker(self) -> ClipRanker:
        path = find_clip(self.models_dir, str(self.get_option("interrogate_clip_model") or ""))
        key = (path, (path / "config.json").stat().st_mtime)
        if self._ranker is None or self._ranker[0] != key:
            self._ranker = None  # let the old model go before the new one loads
            self._ranker = (key, ClipRanker.load(path))
        return self._ranker[1]

    def interrogate(self, image: Image.Image, model: str = "clip") -> str:
        name = str(model or "").strip().lower()
        if name == "deepdanbooru":
            raise InvalidRequest("deepdanbooru is not available in Easel (A1111's model is a pickled torch port of a "
                                 "TensorFlow tagger); use model \"clip\"")
        if name != "clip":
            raise InvalidRequest(f"unknown interrogate model {str(model)[:40]!r}; choose one of {list(MODELS)}")
        with self._lock:
            try:
                ranks = self.ranker().rank(image, int(self.get_option("interrogate_clip_dict_limit")))
            finally:
                if not self.get_option("interrogate_keep_models_in_memory"):
                    self._ranker = None
        return caption(ranks, with_ranks=bool(self.get_option("interrogate_return_ranks")))
