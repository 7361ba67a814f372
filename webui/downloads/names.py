"""Where an installed model goes and what it is called: the model folders a URL install may write to, the file
name (the user's, the server's Content-Disposition, or the URL's last path segment), checked to be a plain name with
a model extension, and the no-overwrite move into place."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import tempfile
import unicodedata
from email.message import Message
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from webui.errors import Conflict, InvalidRequest

if TYPE_CHECKING:
    from webui.app import Application

# the API's folder names (A1111's models/ sub-folders) → the Paths attribute that holds each
FOLDERS = {
    "Stable-diffusion": "ckpt_dir",
    "Lora": "lora_dir",
    "LyCORIS": "lycoris_dir",
    "VAE": "vae_dir",
    "ControlNet": "controlnet_dir",
    "ESRGAN": "esrgan_dir",
    "embeddings": "embeddings_dir",
}
MODEL_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
PICKLE_EXTENSIONS = (".ckpt", ".pt", ".pth", ".bin")
# what each folder's scanner lists: a pickle with another extension is renamed to the first pickle one listed
LISTED = {
    "Stable-diffusion": (".safetensors", ".ckpt"),
    "Lora": (".safetensors", ".pt", ".ckpt"),
    "LyCORIS": (".safetensors", ".pt", ".ckpt"),
    "VAE": (".safetensors", ".pt", ".ckpt"),
    "embeddings": (".safetensors", ".pt", ".bin"),
}
MAX_FILENAME = 150
_BAD = re.compile(r'[\\/:*?"<>|\x00-\x1f\x7f]')
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}


def folder_path(application: Application, folder: str) -> Path:
    if folder not in FOLDERS:
        raise InvalidRequest(f"folder {folder!r} is not one of {sorted(FOLDERS)}")
    return Path(getattr(application.paths, FOLDERS[folder]))


def check_filename(name: str) -> str:
    """A plain file name with a model extension: no folders, no '..', no leading dot, no control or reserved
    characters, at most MAX_FILENAME characters. Raises InvalidRequest saying which rule it broke."""
    name = unicodedata.normalize("NFC", name.strip())
    if not name:
        raise InvalidRequest("filename is empty")
    if len(name) > MAX_FILENAME:
        raise InvalidRequest(f"filename is {len(name)} characters long; at most {MAX_FILENAME}")
    if _BAD.search(name) or name.startswith(".") or ".." in name or name.split(".")[0].upper() in _RESERVED:
        raise InvalidRequest(
            f"filename {name!r} is not a plain file name: no path separators, '..', leading '.', "
            'control characters or any of : * ? " < > |'
        )
    if Path(name).suffix.lower() not in MODEL_EXTENSIONS:
        raise InvalidRequest(f"filename {name!r} must end in one of {', '.join(MODEL_EXTENSIONS)}")
    return name


def disposition_name(header: str | None) -> str | None:
    """The file name of a Content-Disposition header (RFC 6266, `filename*=UTF-8''…` included), by the library."""
    if not header or len(header) > 2048:
        return None
    msg = Message()
    msg["content-disposition"] = header
    name = msg.get_filename()
    return str(name) if name else None


def url_name(url: str) -> str | None:
    """The last segment of a URL's path, percent-decoded ("…/resolve/main/model.safetensors" → "model.safetensors")."""
    path = urlsplit(url).path
    return unquote(path.rstrip("/").rsplit("/", 1)[-1]) or None


def choose_filename(candidates: list[str | None]) -> str | None:
    """The first server-given name that passes check_filename once cut to its last path component."""
    for raw in candidates:
        if not raw:
            continue
        base = re.split(r"[\\/]", raw.strip())[-1]
        with contextlib.suppress(InvalidRequest):
            return check_filename(base)
    return None


def part_path(folder: Path, url: str) -> Path:
    """The download's temp file: hidden (no scanner lists it), named after the URL so a retry resumes it."""
    return folder / f".easel-download-{hashlib.sha256(url.encode()).hexdigest()[:16]}.part"


def listed_name(folder: str, name: str, *, pickle: bool) -> str:
    """`name`, with a pickle's extension changed to one the folder's scanner lists (a checkpoint `.bin` → `.ckpt`)."""
    listed = LISTED.get(folder)
    suffix = Path(name).suffix.lower()
    if not pickle or listed is None or suffix in listed:
        return name
    ext = next(e for e in listed if e in PICKLE_EXTENSIONS)
    return Path(name).stem + ext


def taken(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def conflict(path: Path, folder: str) -> Conflict:
    return Conflict(
        f"{path.name} already exists in {folder}: choose another filename (an install never replaces a file)"
    )


def place(src: Path, dest: Path, folder: str) -> None:
    """Move `src` to `dest` in one step, never replacing a file already there (Conflict): a hard link appears under
    the new name complete or not at all, then the temp name goes. Across file systems the bytes are copied to a
    temp file beside `dest` first; where hard links are not supported, a plain rename after the check."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)
    except FileExistsError:
        raise conflict(dest, folder) from None
    except OSError as e:
        if e.errno == errno.EXDEV:
            fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
            os.close(fd)
            try:
                shutil.copyfile(src, tmp)
                place(Path(tmp), dest, folder)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        elif e.errno in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            if taken(dest):
                raise conflict(dest, folder) from None
            os.rename(src, dest)
            return
        else:
            raise
    with contextlib.suppress(FileNotFoundError):
        os.unlink(src)
