"""The models an infotext names that this server doesn't have: its `Model hash` (with `Model`) and each entry of
`Lora hashes`, looked up in the checkpoint and LoRA catalogs. PNG Info (the tab and /sdapi/v1/png-info) says which
are missing and offers the install box."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from webui.app import Application

MAX_LORAS = 64  # an infotext names a few; a hostile one can't make the server hash every file many times over
_HEX = re.compile(r"[0-9a-fA-F]{8,64}")


def _checkpoint_known(application: Application, model_hash: str, name: str) -> bool:
    from webui.models.hashing import legacy_model_hash

    items = application.catalog.list()
    named = [i for i in items if name in (i.model_name, i.infotext_name, i.name, i.title)]
    if not model_hash:
        return bool(named)
    h = model_hash.lower()
    if any(i.sha256.startswith(h) for i in items):
        return True
    # A1111's old 8-digit hash (of 64 KiB at 1 MiB): checked on the files of that name only
    return len(h) == 8 and any(not i.is_folder and _legacy(legacy_model_hash, i.path) == h for i in named)


def _legacy(fn, path) -> str | None:
    try:
        return fn(path)
    except OSError:
        return None


def lora_hashes(value: str) -> list[tuple[str, str]]:
    """A1111's `Lora hashes: "name: 0123456789ab, other: …"` → [(name, hash)] (entries it can't read skipped)."""
    out: list[tuple[str, str]] = []
    for entry in value.strip().strip('"').split(","):
        name, sep, digest = entry.strip().rpartition(":")
        digest = digest.strip()
        if sep and name.strip() and _HEX.fullmatch(digest):
            out.append((name.strip(), digest.lower()))
    return out[:MAX_LORAS]


def _lora_known(application: Application, name: str, digest: str) -> bool:
    catalog = application.lora_catalog
    entries = catalog.list()
    named = [e for e in entries if name in (e.name, e.alias, e.rel)]
    for entry in named + [e for e in entries if e not in named]:
        try:
            if catalog.shorthash(entry).startswith(digest[:12]):
                return True
        except OSError:
            continue
    return False


def missing_models(application: Application, parameters: Mapping[str, Any]) -> list[dict[str, Any]]:
    """[{"type": "checkpoint"|"lora", "name", "hash"}] for each model the parsed infotext names and no catalog has.
    A checkpoint is found by the hash's prefix of a file's SHA-256 (A1111's 10-digit `Model hash`), else by name;
    a LoRA by its 12-digit hash, trying the file of the same name first."""
    missing: list[dict[str, Any]] = []
    model_hash = str(parameters.get("Model hash") or "").strip()[:64]
    model = str(parameters.get("Model") or "").strip()[:500]
    if (model_hash or model) and not _checkpoint_known(application, model_hash, model):
        missing.append({"type": "checkpoint", "name": model or None, "hash": model_hash or None})
    for name, digest in lora_hashes(str(parameters.get("Lora hashes") or "")[:10000]):
        if not _lora_known(application, name, digest):
            missing.append({"type": "lora", "name": name, "hash": digest})
    return missing


def describe_missing(missing: list[dict[str, Any]]) -> str:
    """One line per missing model, for the UI."""
    return "; ".join(
        f"{'checkpoint' if m['type'] == 'checkpoint' else 'LoRA'} {m['name'] or '?'}"
        + (f" [{m['hash']}]" if m.get("hash") else "")
        for m in missing
    )
