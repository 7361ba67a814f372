"""A training dataset: a folder of images with `<image>.txt` captions (or one caption template with a trigger word),
checked completely before anything starts, sorted into aspect-ratio buckets, and encoded through the VAE once.

Caption rules: an image's caption is its `<stem>.txt` (or `<file>.txt`). With a template, `{caption}` in it is
replaced by that text and `{name}` by the file stem; a template without `{caption}` is the caption of every image
that has no caption file. Every image needs a caption from one of the two.
"""

from __future__ import annotations

import math
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch

from webui.errors import InvalidRequest
from webui.outputs import open_user_image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
CAPTION_EXTENSIONS = (".txt", ".caption")
IGNORED_FILES = ("thumbs.db", "desktop.ini")
MAX_LISTED = 5


@dataclass
class DatasetItem:
    path: Path
    caption: str
    width: int
    height: int


@dataclass
class Dataset:
    folder: Path
    items: list[DatasetItem]

    def tag_frequency(self, repeats: int) -> dict[str, dict[str, int]]:
        """kohya's ss_tag_frequency: {"<repeats>_<folder>": {tag: count}}, tags being the comma-separated parts."""
        counts: Counter[str] = Counter()
        for item in self.items:
            counts.update(t.strip() for t in item.caption.split(",") if t.strip())
        return {f"{repeats}_{self.folder.name}": dict(counts)}


def _listing(paths: list[Path], root: Path) -> str:
    names = [p.relative_to(root).as_posix() for p in paths[:MAX_LISTED]]
    more = f" and {len(paths) - MAX_LISTED} more" if len(paths) > MAX_LISTED else ""
    return ", ".join(names) + more


def _caption_text(image: Path) -> str | None:
    for candidate in [image.with_suffix(e) for e in CAPTION_EXTENSIONS] + [Path(str(image) + ".txt")]:
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8", errors="replace").strip()
    return None


def make_caption(text: str | None, template: str, stem: str) -> str | None:
    template = (template or "").strip()
    if not template:
        return text
    if "{caption}" in template:
        return template.replace("{caption}", text or "").replace("{name}", stem).strip(" ,")
    return text if text else template.replace("{name}", stem)


def _check_image(path: Path) -> tuple[int, int]:
    with open_user_image(path) as im:
        im.verify()  # structure (truncated chunks, bad CRCs)
    with open_user_image(path) as im:
        im.load()  # and the pixels themselves
        return im.size


def load_dataset(folder: str | os.PathLike, caption_template: str = "") -> Dataset:
    """Scan and check every file. Raises InvalidRequest, naming the offending files, and writes nothing."""
    root = Path(folder).expanduser()
    if not str(folder).strip() or not root.is_dir():
        raise InvalidRequest(f"dataset folder not found: {folder!r}")
    images: list[Path] = []
    others: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            p = Path(dirpath) / f
            ext = p.suffix.lower()
            if f.startswith(".") or f.lower() in IGNORED_FILES or ext in CAPTION_EXTENSIONS:
                continue
            (images if ext in IMAGE_EXTENSIONS else others).append(p)
    if others:
        raise InvalidRequest(
            f"the dataset folder has files that are not images ({', '.join(IMAGE_EXTENSIONS)}) or "
            f"captions (.txt): {_listing(others, root)}. Move them out of {root}."
        )
    if not images:
        raise InvalidRequest(f"no images in the dataset folder {root}")
    items, corrupt, uncaptioned = [], [], []
    for p in images:
        try:
            w, h = _check_image(p)
        except Exception:
            corrupt.append(p)
            continue
        caption = make_caption(_caption_text(p), caption_template, p.stem)
        if caption is None:
            uncaptioned.append(p)
            continue
        items.append(DatasetItem(path=p, caption=caption, width=w, height=h))
    if corrupt:
        raise InvalidRequest(f"corrupt or unreadable images in the dataset: {_listing(corrupt, root)}")
    if uncaptioned:
        raise InvalidRequest(
            f"images without a caption: {_listing(uncaptioned, root)}. Add <image>.txt files or a "
            "caption template (e.g. 'a photo of sks dog')."
        )
    return Dataset(folder=root, items=items)


# --- aspect-ratio buckets ------------------------------------------------------------------------------------------


def make_buckets(resolution: int, step: int) -> list[tuple[int, int]]:
    """(width, height) sizes of about resolution² pixels, sides multiples of `step` between resolution/2 and 2×."""
    lo, hi = max(step, (resolution // 2) // step * step), resolution * 2
    area = resolution * resolution
    sizes = {(resolution // step * step,) * 2}
    for w in range(lo, hi + 1, step):
        h = min(hi, area // w // step * step)
        if h >= lo:
            sizes.update({(w, h), (h, w)})
    return sorted(sizes)


def assign_bucket(width: int, height: int, buckets: list[tuple[int, int]]) -> tuple[int, int]:
    ratio = math.log(width / height)
    return min(buckets, key=lambda b: (abs(math.log(b[0] / b[1]) - ratio), -b[0] * b[1]))


def fit_to_bucket(image, size: tuple[int, int]):
    """Resize so the image covers the bucket, then centre-crop to it."""
    from PIL import Image

    w, h = size
    scale = max(w / image.width, h / image.height)
    rw, rh = max(w, round(image.width * scale)), max(h, round(image.height * scale))
    image = image.convert("RGB").resize((rw, rh), Image.Resampling.LANCZOS)
    left, top = (rw - w) // 2, (rh - h) // 2
    return image.crop((left, top, left + w, top + h))


# --- cached latents ------------------------------------------------------------------------------------------------


@dataclass
class Sample:
    latent: torch.Tensor  # (C, h, w), scaled by the VAE's scaling factor
    caption: str


@dataclass
class LatentCache:
    buckets: dict[tuple[int, int], list[Sample]] = field(default_factory=dict)

    @property
    def num_images(self) -> int:
        return sum(len(v) for v in self.buckets.values())

    def batches(self, batch_size: int, repeats: int, seed: int, epoch: int) -> list[list[Sample]]:
        """One epoch: every image `repeats` times, batches never mixing buckets, in a seeded order."""
        rng = random.Random(seed * 100_003 + epoch)
        out = []
        for size in sorted(self.buckets):
            samples = self.buckets[size] * repeats
            rng.shuffle(samples)
            out += [samples[i : i + batch_size] for i in range(0, len(samples), batch_size)]
        rng.shuffle(out)
        return out


@torch.no_grad()
def encode_latents(vae, dataset: Dataset, resolution: int, step: int, *, batch: int = 4) -> LatentCache:
    """Encode every image once at its bucket size (the posterior mean, scaled): training then never runs the VAE."""
    import numpy as np

    buckets = make_buckets(resolution, step)
    grouped: dict[tuple[int, int], list[DatasetItem]] = {}
    for item in dataset.items:
        grouped.setdefault(assign_bucket(item.width, item.height, buckets), []).append(item)
    scale = getattr(vae.config, "scaling_factor", 0.18215) or 0.18215
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    device, dtype = vae.device, vae.dtype
    cache = LatentCache()
    for size, items in grouped.items():
        for i in range(0, len(items), batch):
            chunk = items[i : i + batch]
            arrays = []
            for item in chunk:
                with open_user_image(item.path) as im:
                    arrays.append(np.asarray(fit_to_bucket(im, size), dtype=np.float32) / 127.5 - 1.0)
            x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).to(device, dtype)
            latents = (vae.encode(x).latent_dist.mean - shift) * scale
            cache.buckets.setdefault(size, []).extend(
                Sample(latent=lat.float().cpu(), caption=item.caption) for lat, item in zip(latents, chunk)
            )
    return cache
