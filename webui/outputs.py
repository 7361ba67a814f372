"""Saving images the way A1111 does: folders, `NNNNN-<pattern>.png` names, infotext inside, atomic writes;
plus grids and the base64 encoding used by the API."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import io
import math
import os
import re
import string
import threading
from pathlib import Path
from typing import Callable, Literal, Mapping

from PIL import Image, ImageColor, UnidentifiedImageError

from webui.errors import DiskFull, InvalidRequest, PayloadTooLarge, is_disk_full
from webui.fsutil import atomic_write_bytes
from webui.generation.cost import area_text
from webui.infotext import exif_bytes_for, pnginfo_for

Kind = Literal["txt2img", "img2img", "extras"]

DEFAULT_OPTIONS: dict[str, object] = {
    "samples_format": "png",
    "grid_format": "png",
    "samples_filename_pattern": "[seed]",
    "save_to_dirs": True,
    "grid_save_to_dirs": True,
    "directories_filename_pattern": "[date]",
    "grid_extended_filename": False,
    "outdir_samples": "",  # when set, every kind's samples go here (A1111 semantics)
    "outdir_grids": "",
    "outdir_txt2img_samples": "outputs/txt2img-images",
    "outdir_img2img_samples": "outputs/img2img-images",
    "outdir_extras_samples": "outputs/extras-images",
    "outdir_txt2img_grids": "outputs/txt2img-grids",
    "outdir_img2img_grids": "outputs/img2img-grids",
    "jpeg_quality": 80,
    "webp_lossless": False,
    "directories_max_prompt_words": 8,
}

FORMATS: dict[str, str] = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP"}
DEFAULT_MAX_PIXELS = 8192 * 8192
MAX_PART_LENGTH = 128  # A1111's limit for one substituted part ([prompt] ...)
MAX_NAME_BYTES = 250  # stay under the usual 255-byte file-name limit

_INVALID_CHARS = set('#<>:"/\\|?*')
_PATTERN_RE = re.compile(r"\[(\w+)(?:<([^>\]]*)>)?\]")
_NONLETTERS_RE = re.compile(r"[\s" + re.escape(string.punctuation) + r"]+")
_NUMBER_RE = re.compile(r"^(\d+)(?:-|$)")


def sanitize_filename_part(text: str, replace_spaces: bool = True) -> str:
    """Make `text` safe inside a file name: no path separators, reserved or control characters; at most
    128 characters; no leading spaces or trailing spaces/dots."""
    if replace_spaces:
        text = text.replace(" ", "_")
    text = "".join("_" if c in _INVALID_CHARS or ord(c) < 32 or ord(c) == 127 else c for c in text)
    return text.lstrip(" ")[:MAX_PART_LENGTH].rstrip(" .")


def _truncate_bytes(text: str, limit: int) -> str:
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", errors="ignore")


def render_pattern(pattern: str, values: Mapping[str, object]) -> str:
    """Replace `[key]` (and `[key<fmt>]` for date/datetime) with values; unknown keys stay literal, as in A1111.
    A callable value is called with the `<fmt>` argument (or None)."""

    def repl(match: re.Match[str]) -> str:
        key, arg = match.group(1).lower(), match.group(2)
        if key not in values:
            return match.group(0)
        value = values[key]
        if callable(value):
            value = value(arg)
        return "" if value is None else str(value)

    return _PATTERN_RE.sub(repl, pattern)


def _prompt_words(prompt: str, limit: int) -> str:
    words = [w for w in _NONLETTERS_RE.split(prompt) if w] or ["empty"]
    return sanitize_filename_part(" ".join(words[:limit]), replace_spaces=False)


class OutputWriter:
    """Writes generated images under the data dir following the `outdir_*` and naming options.

    `get_option(key)` (or a mapping) supplies settings; a missing key, a KeyError or None falls back to
    `DEFAULT_OPTIONS`. Relative output folders are resolved against `data_dir`. Numbering is safe across
    threads of one writer (a lock) and never overwrites a file (names are reserved with O_EXCL).
    """

    def __init__(
        self, data_dir: Path | str, get_option: Callable[[str], object] | Mapping[str, object] | None = None
    ) -> None:
        self.data_dir = Path(data_dir)
        self._get = get_option
        self._lock = threading.Lock()

    def with_options(self, get_option: Callable[[str], object] | Mapping[str, object]) -> "OutputWriter":
        """The same writer (data dir, numbering lock) reading other options: one job's `override_settings`."""
        writer = OutputWriter(self.data_dir, get_option)
        writer._lock = self._lock
        return writer

    def option(self, key: str) -> object:
        value = None
        try:
            if callable(self._get):
                value = self._get(key)
            elif self._get is not None:
                value = self._get.get(key)
        except KeyError:
            value = None
        return DEFAULT_OPTIONS.get(key) if value is None else value

    # ------------------------------------------------------------ folders and names

    def base_folder(self, kind: Kind, grid: bool = False) -> Path:
        """The folder for a kind before the date sub-folder, e.g. <data>/outputs/txt2img-images."""
        if kind not in ("txt2img", "img2img", "extras") or (grid and kind == "extras"):
            raise InvalidRequest(f"no output folder for kind={kind!r} grid={grid}")
        group = "grids" if grid else "samples"
        folder = str(self.option(f"outdir_{group}") or self.option(f"outdir_{kind}_{group}"))
        path = Path(folder).expanduser()
        return path if path.is_absolute() else self.data_dir / path

    def folder_for(self, kind: Kind, *, grid: bool = False, values: Mapping[str, object] | None = None) -> Path:
        """base_folder plus the `directories_filename_pattern` sub-folder ([date]) when saving to dirs."""
        folder = self.base_folder(kind, grid)
        if self.option("grid_save_to_dirs" if grid else "save_to_dirs"):
            sub = render_pattern(str(self.option("directories_filename_pattern") or "[date]"), values or {})
            for part in re.split(r"[/\\]", sub):  # "/" nests folders, as in A1111; ".." cannot climb out
                part = sanitize_filename_part(part, replace_spaces=False)
                if part.strip("."):
                    folder = folder / part
        return folder

    def pattern_values(
        self,
        *,
        seed: int | None,
        prompt: str,
        model_name: str,
        image: Image.Image,
        when: dt.datetime,
        fields: Mapping[str, object] | None = None,
    ) -> dict[str, object]:
        """Values for the filename pattern. `fields` adds or overrides keys ([steps], [cfg], [sampler]...)."""
        words = int(str(self.option("directories_max_prompt_words")))
        values: dict[str, object] = {
            "seed": "" if seed is None else seed,
            "prompt": sanitize_filename_part(prompt),
            "prompt_spaces": sanitize_filename_part(prompt, replace_spaces=False),
            "prompt_words": _prompt_words(prompt, words),
            "prompt_hash": hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:8],
            "model_name": sanitize_filename_part(model_name, replace_spaces=False),
            "width": image.width,
            "height": image.height,
            "date": lambda fmt: when.strftime(fmt or "%Y-%m-%d"),
            "datetime": lambda fmt: when.strftime(fmt or "%Y%m%d%H%M%S"),
            "none": "",
        }
        for key, value in (fields or {}).items():
            values[key.lower()] = sanitize_filename_part(str(value), replace_spaces=False)
        return values

    def next_number(self, folder: Path, prefix: str = "") -> int:
        """1 + the highest number among names `<prefix>NNNNN[-...]` in `folder` (0 for an empty folder)."""
        highest = -1
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return 0
        for name in names:
            if name.startswith(".") or not name.startswith(prefix):
                continue
            match = _NUMBER_RE.match(os.path.splitext(name[len(prefix) :])[0])
            if match:
                highest = max(highest, int(match.group(1)))
        return highest + 1

    def _reserve(self, folder: Path, prefix: str, digits: int, decoration: str, ext: str) -> Path:
        """Create an empty placeholder under a fresh numbered name, so no other save can take it."""
        with self._lock:
            folder.mkdir(parents=True, exist_ok=True)
            start = self.next_number(folder, prefix)
            for number in range(start, start + 1000):
                path = folder / f"{prefix}{number:0{digits}d}{decoration}.{ext}"
                try:
                    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    continue
                os.close(fd)
                return path
        raise OSError(f"could not find a free file name in {folder}")

    # ------------------------------------------------------------ saving

    def encode(
        self, image: Image.Image, extension: str, infotext: str | None, extra_text: Mapping[str, str] | None = None
    ) -> bytes:
        """Encode to png/jpg/webp bytes with the infotext embedded (PNG chunk or EXIF UserComment)."""
        fmt = FORMATS.get(extension.lower())
        if fmt is None:
            raise InvalidRequest(f"unsupported image format {extension!r}; use one of {sorted(FORMATS)}")
        buf = io.BytesIO()
        if fmt == "PNG":
            image.save(buf, format="PNG", pnginfo=pnginfo_for(infotext, extra_text))
            return buf.getvalue()
        has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
        if fmt == "JPEG" and image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        elif fmt == "WEBP" and image.mode not in ("RGB", "RGBA"):
            image = image.convert("RGBA" if has_alpha else "RGB")
        kwargs: dict[str, object] = {"quality": int(str(self.option("jpeg_quality")))}
        if fmt == "WEBP" and self.option("webp_lossless"):
            kwargs["lossless"] = True
        if infotext:
            kwargs["exif"] = exif_bytes_for(infotext)
        image.save(buf, format=fmt, **kwargs)
        return buf.getvalue()

    def save_image(
        self,
        image: Image.Image,
        *,
        kind: Kind,
        seed: int | None,
        prompt: str,
        infotext: str | None,
        model_name: str = "",
        extension: str | None = None,
        grid: bool = False,
        date: dt.datetime | dt.date | None = None,
        fields: Mapping[str, object] | None = None,
        extra_text: Mapping[str, str] | None = None,
    ) -> Path:
        """Save one image (or grid) atomically and return its path.

        Samples: `<outdir>/<YYYY-MM-DD>/NNNNN-<samples_filename_pattern>.<ext>`; extras (or seed=None) use
        the short name `NNNNN.<ext>`. Grids: `<grids outdir>/<date>/grid-NNNN.<ext>` as A1111 names them,
        `grid-NNNN-<pattern>.<ext>` with the option grid_extended_filename.
        """
        if date is None:
            when = dt.datetime.now()
        elif isinstance(date, dt.datetime):
            when = date
        else:
            when = dt.datetime.combine(date, dt.time())
        ext = (extension or str(self.option("grid_format" if grid else "samples_format"))).lower().lstrip(".")
        data = self.encode(image, ext, infotext, extra_text)

        values = self.pattern_values(
            seed=seed, prompt=prompt, model_name=model_name, image=image, when=when, fields=fields
        )
        folder = self.folder_for(kind, grid=grid, values=values)
        short = (grid and not self.option("grid_extended_filename")) or (not grid and kind == "extras")
        decoration = ""
        if not short and seed is not None:
            pattern = str(self.option("samples_filename_pattern") or "")
            if not pattern:
                pattern = "[seed]" if self.option("save_to_dirs") else "[seed]-[prompt_spaces]"
            decoration = sanitize_filename_part(render_pattern(pattern, values), replace_spaces=False)
            decoration = _truncate_bytes(decoration, MAX_NAME_BYTES - 16 - len(ext)).rstrip(" .")
            decoration = f"-{decoration}" if decoration else ""
        prefix, digits = ("grid-", 4) if grid else ("", 5)

        try:
            path = self._reserve(folder, prefix, digits, decoration, ext)
            try:
                atomic_write_bytes(path, data)
            except BaseException:
                path.unlink(missing_ok=True)
                raise
        except OSError as e:
            if is_disk_full(e):
                raise DiskFull(f"disk full: free space in {folder}", detail=f"could not save an image: {e}") from None
            raise
        return path


# ---------------------------------------------------------------- grids and base64


def grid_rows(count: int) -> int:
    """A1111's default: rows = round(sqrt(n)), at least 1 and at most n."""
    return max(1, min(count, round(math.sqrt(count))))


def make_grid(images: list[Image.Image], rows: int | None = None, *, background: str = "#ffffff") -> Image.Image:
    """Paste images into a rows x ceil(n/rows) RGB grid; cells are the largest width/height, and a smaller
    image is centred in its cell."""
    if not images:
        raise InvalidRequest("cannot make a grid of no images")
    if rows is None:
        rows = grid_rows(len(images))
    if rows < 1:
        raise InvalidRequest(f"grid rows must be at least 1, got {rows}")
    rows = min(rows, len(images))
    cols = math.ceil(len(images) / rows)
    cell_w = max(img.width for img in images)
    cell_h = max(img.height for img in images)
    grid = Image.new("RGB", (cols * cell_w, rows * cell_h), ImageColor.getrgb(background))
    for i, img in enumerate(images):
        x = (i % cols) * cell_w + (cell_w - img.width) // 2
        y = (i // cols) * cell_h + (cell_h - img.height) // 2
        grid.paste(img.convert("RGB") if img.mode != "RGB" else img, (x, y))
    return grid


def encode_png_base64(image: Image.Image, infotext: str | None = None) -> str:
    """A PNG (with the infotext in its "parameters" chunk) as a base64 string, for API responses."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=pnginfo_for(infotext))
    return base64.b64encode(buf.getvalue()).decode("ascii")


# The only formats a user's bytes are decoded as (API fields, uploads, batch and dataset folders). Pillow would
# otherwise try ~40, some through external programs (EPS runs Ghostscript) or little-tested parsers.
USER_IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")


def open_user_image(fp) -> Image.Image:
    """Image.open limited to USER_IMAGE_FORMATS (a path or a binary file object). Anything else raises
    PIL.UnidentifiedImageError, as for bytes that are no image at all. Lazy, like Image.open: call load()."""
    return Image.open(fp, formats=USER_IMAGE_FORMATS)


def decode_base64_image(data: str, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode a base64 image (plain, or a `data:image/...;base64,` URL) and load it.

    Raises InvalidRequest for input that is not base64 or not an image, and PayloadTooLarge when the image
    has more than `max_pixels` pixels; the size is checked from the header before any pixel is decoded.
    """
    if not isinstance(data, str):
        raise InvalidRequest(f"expected a base64 string, got {type(data).__name__}")
    payload = data.strip()
    if payload.startswith("data:"):
        header, comma, payload = payload.partition(",")
        if not comma or ";base64" not in header:
            raise InvalidRequest("data URL must look like 'data:image/png;base64,<data>'")
    payload = "".join(payload.split()).replace("-", "+").replace("_", "/")
    payload += "=" * (-len(payload) % 4)
    if not payload:
        raise InvalidRequest("empty image data")
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as e:
        raise InvalidRequest(f"image is not valid base64: {e}") from None
    try:
        image = open_user_image(io.BytesIO(raw))
    except Image.DecompressionBombError as e:
        raise PayloadTooLarge(f"image is too large: {e}") from None
    except UnidentifiedImageError:
        raise InvalidRequest(
            f"base64 data is not a readable image (accepted formats: {', '.join(USER_IMAGE_FORMATS)})"
        ) from None
    except (OSError, ValueError) as e:
        raise InvalidRequest(f"base64 data is not a readable image: {e}") from None
    width, height = image.size
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"image is {width}×{height} pixels, over the limit of {area_text(max_pixels)} (setting max_image_pixels)"
        )
    try:
        image.load()
    except Image.DecompressionBombError as e:
        raise PayloadTooLarge(f"image is too large: {e}") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise InvalidRequest(f"image data is corrupt or truncated: {e}") from None
    return image
