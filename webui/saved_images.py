"""The galleries' Save and Zip (A1111's buttons under every gallery): copies of the images shown, into one folder
inside the outputs dir (A1111's `outdir_save`, "log/images"; Easel's `outputs/save`). Every file is written to a
temporary name first and linked to its final name (os.link refuses to replace a file), so a reader never sees half
a file and two saves never overwrite each other. Only files that open as images are copied, byte for byte (the
PNG keeps its infotext)."""

from __future__ import annotations

import os
import re
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path

from webui.errors import InvalidRequest
from webui.outputs import open_user_image, sanitize_filename_part

_NUMBERED = re.compile(r"^(\d{5})-")
MAX_FILES = 1000
SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".avif", ".gif")


def _name(src: Path) -> str:
    suffix = src.suffix.lower() if src.suffix.lower() in SUFFIXES else ".png"
    return (sanitize_filename_part(src.stem)[:80] or "image") + suffix


def _checked(paths: Iterable[str | os.PathLike]) -> list[Path]:
    out = []
    for raw in list(paths)[: MAX_FILES + 1]:
        path = Path(raw)
        try:
            with open_user_image(path) as im:
                im.verify()
        except Exception as e:  # noqa: BLE001 - anything that isn't a readable image is refused by name
            raise InvalidRequest(f"{path.name} is not an image that can be saved") from e
        out.append(path)
    if not out:
        raise InvalidRequest("There is no image to save.")
    if len(out) > MAX_FILES:
        raise InvalidRequest(f"At most {MAX_FILES} images at a time.")
    return out


def _next_number(folder: Path) -> int:
    numbers = [int(m.group(1)) for name in os.listdir(folder) if (m := _NUMBERED.match(name))]
    return max(numbers, default=-1) + 1


def _publish(tmp: Path, folder: Path, tail: str) -> Path:
    """Link the finished temp file to the next free `NNNNN-<tail>` name, then drop the temp name."""
    try:
        number = _next_number(folder)
        for n in range(number, number + 1000):
            final = folder / f"{n:05d}-{tail}"
            try:
                os.link(tmp, final)
            except FileExistsError:
                continue
            return final
        raise OSError(f"no free file name in {folder}")
    finally:
        tmp.unlink(missing_ok=True)


def _temp_in(folder: Path, suffix: str) -> Path:
    fd, name = tempfile.mkstemp(prefix=".saving-", suffix=suffix, dir=folder)
    os.close(fd)
    return Path(name)


def save_images(paths: Iterable[str | os.PathLike], folder: Path) -> list[Path]:
    """Copy each image into `folder` as NNNNN-<name>; returns the new files."""
    files = _checked(paths)
    folder.mkdir(parents=True, exist_ok=True)
    saved = []
    for src in files:
        tmp = _temp_in(folder, ".part")
        tmp.write_bytes(src.read_bytes())
        saved.append(_publish(tmp, folder, _name(src)))
    return saved


def zip_images(paths: Iterable[str | os.PathLike], folder: Path) -> Path:
    """One zip of the images in `folder` (NNNNN-images.zip), their names numbered in gallery order."""
    files = _checked(paths)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = _temp_in(folder, ".part")
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:  # PNGs are compressed already
            for i, src in enumerate(files):
                z.write(src, f"{i:05d}-{_name(src)}")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return _publish(tmp, folder, "images.zip")
