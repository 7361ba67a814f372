"""The end of an install job: recognise the verified download, choose its folder, convert a pickle when asked, move
it under its final name (never over an existing file) and list it in the catalogs without a restart."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from webui.downloads import classify, names
from webui.errors import EaselError, InvalidRequest

if TYPE_CHECKING:
    from webui.app import Application


def _list(application: Application, folder: str, dest: Path, sha256: str | None) -> dict[str, Any]:
    """Refresh the catalog that lists `folder` and return what it says about the new file."""
    if folder == "Stable-diffusion":
        ckpt_dir = Path(application.paths.ckpt_dir)
        if sha256:  # the download's hash is the file's: the catalog need not read gigabytes again
            rel = dest.relative_to(ckpt_dir).as_posix()
            application.hashes.get("hashes", f"checkpoint/{rel}", dest, lambda _p: sha256)
        application.models.refresh()  # /sdapi/v1/sd-models and the UI's dropdowns list it now
        info = next((i for i in application.catalog.list() if i.path.resolve() == dest.resolve()), None)
        return {"title": info.title if info else None}
    if folder in ("Lora", "LyCORIS"):
        application.loras.refresh()
        entry = next((e for e in application.lora_catalog.list() if e.path.resolve() == dest.resolve()), None)
        return {
            "lora_name": entry.name if entry else None,
            "format": entry.format if entry else None,
            "error": entry.error if entry else None,
        }
    if folder == "embeddings":
        application.embeddings.refresh()
    elif folder == "VAE":
        application.models.refresh()
    return {}


def _convert(found: classify.Inspected, dest: Path, folder: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        classify.convert_to_safetensors(found.tensors, Path(tmp))
        names.place(Path(tmp), dest, folder)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def finish(
    application: Application, spec, part: Path, name: str, fetched, *, verified: bool, control
) -> dict[str, Any]:
    """Inspect `part` (downloaded as `name`), place it, list it; the job's value. The caller removes `part`."""
    control.textinfo = f"Checking {name}"
    try:
        found = classify.inspect_file(part, Path(name).suffix)
    except EaselError as e:
        e.message = (
            f"{name}: {e.message}; the file was deleted" if "deleted" not in e.message else f"{name}: {e.message}"
        )
        raise
    folder = found.kind or spec.folder
    if folder is None:
        raise InvalidRequest(
            f"{name} is not recognised as a model ({found.note}); the file was deleted. Give a "
            "folder to install it anyway"
        )
    dest_dir = names.folder_path(application, folder)
    dest_dir.mkdir(parents=True, exist_ok=True)
    convertible = found.is_pickle and bool(found.tensors) and folder != "embeddings"
    convert = convertible and spec.req.convert_to_safetensors
    final = Path(name).stem + ".safetensors" if convert else names.listed_name(folder, name, pickle=found.is_pickle)
    dest = dest_dir / final
    if names.taken(dest):
        raise names.conflict(dest, folder)
    if convert:
        control.textinfo = f"Converting {name} to safetensors"
        _convert(found, dest, folder)
    else:
        names.place(part, dest, folder)
    control.textinfo = f"Listing {final}"
    listed = _list(application, folder, dest, None if convert else fetched.sha256)
    notes = []
    if spec.folder and spec.folder != folder:
        notes.append(f"the file is a {found.label or folder}: placed in {folder}, not {spec.folder}")
    if not found.kind:
        notes.append(f"not recognised ({found.note}): placed in {folder} as asked")
    if found.note and found.kind:
        notes.append(found.note)
    if convertible and not convert:
        notes.append("a pickle: install again with convert_to_safetensors to get a .safetensors file")
    return {
        "name": final,
        "path": str(dest),
        "model": {
            "folder": folder,
            "requested_folder": spec.folder,
            "kind": found.label or None,
            "family": found.family,
            "sha256": fetched.sha256,
            "verified": verified,
            "size": fetched.size,
            "pickle": found.is_pickle,
            "convertible": convertible,
            "converted": convert,
            "resumed_at": fetched.ranges,
            "notes": notes,
            **listed,
        },
    }
