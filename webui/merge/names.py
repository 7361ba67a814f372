"""The merge's output file name (A1111's, or the user's, confined to the checkpoint folder) and the "discard weights"
pattern (compiled once, run with a time limit)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Callable

from webui.errors import Conflict, InvalidRequest

MAX_NAME = 100  # the user's name, without extension
MAX_GENERATED = 150  # A1111's generated name from long model names is cut to this
_BAD_CHARS = re.compile(r'[\\/:*?"<>|\x00-\x1f\x7f]')
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}
_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth")
REGEX_SECONDS = 2.0  # for all the tensor names of one checkpoint together


def custom_base(name: str) -> str:
    """The user's name, checked: a plain file name (no folders, no '..', no leading dot), at most 100 characters."""
    base = name.strip()
    for ext in _EXTENSIONS:
        if base.lower().endswith(ext):
            base = base[: -len(ext)].rstrip()
    if len(base) > MAX_NAME:
        raise InvalidRequest(f"name is {len(base)} characters long; at most {MAX_NAME}")
    if _BAD_CHARS.search(base) or base.startswith(".") or ".." in base or base.split(".")[0].upper() in _RESERVED:
        raise InvalidRequest(
            f"name {name!r} is not a plain file name: no path separators, '..', leading '.', "
            'control characters or any of : * ? " < > |'
        )
    return base


def generated_base(method: str, multiplier: float, a, b, c) -> str:
    """A1111's name for an unnamed merge: "0.7(a) + 0.3(b)", "a + 0.3(b - c)" or "a" (model names, no extension)."""
    m = multiplier
    if method == "weighted_sum":
        base = f"{round(1 - m, 2)}({a.model_name}) + {round(m, 2)}({b.model_name})"
    elif method == "add_difference":
        base = f"{a.model_name} + {round(m, 2)}({b.model_name} - {c.model_name})"
    else:
        base = a.model_name
    base = _BAD_CHARS.sub("_", base).lstrip(".").replace("..", "_.")
    return base[:MAX_GENERATED].rstrip() or "merged"


def output_path(spec, plan) -> Path:
    """`<ckpt_dir>/<name>[.inpainting][.instruct-pix2pix].safetensors`, inside the folder and not taken (409).
    `plan` None: check the name before the plan exists (no suffixes yet)."""
    req = spec.req
    base = (
        custom_base(req.name)
        if req.name.strip()
        else generated_base(req.method, req.multiplier, spec.primary, spec.secondary, spec.tertiary)
    )
    if not base:
        raise InvalidRequest("name is empty")
    suffix = (".inpainting" if plan is not None and plan.is_inpainting else "") + (
        ".instruct-pix2pix" if plan is not None and plan.is_instruct_pix2pix else ""
    )
    folder = Path(spec.ckpt_dir)
    path = folder / f"{base}{suffix}.safetensors"
    if Path(base).name != base or path.parent != folder:  # belt and braces: custom_base allows no separator
        raise InvalidRequest(f"name {req.name!r} would leave the checkpoint folder")
    if path.exists() or path.is_symlink():
        raise Conflict(
            f"{path.name} already exists in the checkpoint folder: choose another name (a merge never "
            "replaces a checkpoint)"
        )
    return path


def discard_matcher(pattern: str) -> Callable[[str], bool] | None:
    """`pattern` compiled (A1111 matches it with re.search against every tensor name), or None when empty.

    User patterns run in the `regex` module (a dependency of transformers, the same syntax as `re` for what A1111
    users write) because it takes a timeout: a catastrophically backtracking pattern is refused after
    REGEX_SECONDS in total instead of hanging the worker."""
    import regex

    if not pattern:
        return None
    if len(pattern) > 256:
        raise InvalidRequest("discard_weights: the pattern is longer than 256 characters")
    try:
        compiled = regex.compile(pattern)
    except (regex.error, RecursionError, OverflowError, ValueError) as e:
        raise InvalidRequest(f"discard_weights: not a valid regular expression: {e}") from None
    budget = {"left": REGEX_SECONDS}

    def matches(key: str) -> bool:
        t0 = time.monotonic()
        try:
            hit = compiled.search(key, timeout=max(0.01, budget["left"])) is not None
        except TimeoutError:
            raise InvalidRequest(
                f"discard_weights: the pattern takes too long to match tensor names "
                f"(over {REGEX_SECONDS:g} s): simplify it"
            ) from None
        budget["left"] -= time.monotonic() - t0
        return hit

    return matches
