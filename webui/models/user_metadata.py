"""A1111's user metadata of an extra network or checkpoint: `<name>.json` beside the file (`foo.safetensors` →
`foo.json`), written by A1111's card editor: "description", "sd version", "activation text", "preferred weight",
"negative text", "notes". Read only here; a missing, oversized or malformed file reads as no metadata."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

MAX_BYTES = 256 * 1024  # a hand-written note; anything larger is not what A1111 writes
TEXT_KEYS = ("description", "sd version", "activation text", "negative text", "notes")
WEIGHT_RANGE = (-10.0, 10.0)


def user_metadata_path(path: Path) -> Path:
    return path.with_suffix(".json")


def preferred_weight(value: Any) -> float | None:
    """A usable weight: a finite number within ±10 (A1111 writes 0 for "not set")."""
    if isinstance(value, bool):
        return None
    try:
        w = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(w) or w == 0 or not WEIGHT_RANGE[0] <= w <= WEIGHT_RANGE[1]:
        return None
    return w


def read_user_metadata(path: Path) -> dict[str, Any]:
    """{key: text} for the TEXT_KEYS present as strings, and "preferred weight" when usable."""
    meta_path = user_metadata_path(Path(path))
    try:
        if not meta_path.is_file() or meta_path.stat().st_size > MAX_BYTES:
            return {}
        raw = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    if not isinstance(raw, dict):
        return {}
    out: dict[str, Any] = {k: raw[k].strip() for k in TEXT_KEYS if isinstance(raw.get(k), str) and raw[k].strip()}
    weight = preferred_weight(raw.get("preferred weight"))
    if weight is not None:
        out["preferred weight"] = weight
    return out
