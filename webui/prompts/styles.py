"""Prompt styles in A1111's `styles.csv` (columns name, prompt, negative_prompt; `--styles-file` can repeat).

- A style's `{prompt}` marks where the user's prompt goes; without it the style is appended with ", " (A1111's
  merge_prompts). Styles apply in the order they are listed, to the prompt and the negative prompt alike.
- New styles are written to the first file; an edited one stays in the file it came from. Writes are atomic
  (webui.fsutil), keep the file's other rows (comments too) in order, and use A1111's encoding (UTF-8 with BOM).
- A file edited by hand is read again on the next use (its mtime changed). When two files name the same style the
  later file wins, as in A1111.
"""

from __future__ import annotations

import builtins
import csv
import io
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from webui.errors import InvalidRequest, NotFound
from webui.fsutil import atomic_write_text

FIELDS = ("name", "prompt", "negative_prompt")


@dataclass(frozen=True)
class PromptStyle:
    name: str
    prompt: str
    negative_prompt: str
    path: Path

    def api(self) -> dict[str, str]:
        return {"name": self.name, "prompt": self.prompt, "negative_prompt": self.negative_prompt}


def merge_prompts(style_prompt: str, prompt: str) -> str:
    """A1111: the style's `{prompt}` is replaced by the prompt; otherwise "prompt, style" (empty parts dropped)."""
    if "{prompt}" in style_prompt:
        return style_prompt.replace("{prompt}", prompt)
    return ", ".join(p for p in (prompt.strip(), style_prompt.strip()) if p)


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of one styles file (A1111's reader: BOM tolerated, spaces after commas skipped, the old `text`
    column read as `prompt`). A missing file has no rows."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f, skipinitialspace=True)
            rows = []
            for row in reader:
                name = (row.get("name") or "").strip()
                if not name:
                    continue
                prompt = row.get("prompt") if "prompt" in row else row.get("text")
                rows.append({"name": name, "prompt": prompt or "", "negative_prompt": row.get("negative_prompt") or ""})
            return rows
    except FileNotFoundError:
        return []
    except (OSError, csv.Error, UnicodeDecodeError) as e:
        raise InvalidRequest(f"cannot read styles file {path}: {e}") from e


def write_rows(path: Path, rows: list[dict[str, str]]) -> None:
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=FIELDS)
    writer.writeheader()
    writer.writerows({k: row.get(k, "") for k in FIELDS} for row in rows)
    atomic_write_text(path, "\ufeff" + buf.getvalue())


class StyleStore:
    def __init__(self, files: Iterable[Path]):
        self.files = [Path(f) for f in files]
        if not self.files:
            raise ValueError("StyleStore needs at least one styles file")
        self._lock = threading.RLock()
        self._stamp: tuple | None = None
        self._rows: dict[Path, list[dict[str, str]]] = {}
        self._styles: dict[str, PromptStyle] = {}

    def _mtimes(self) -> tuple:
        out: builtins.list[tuple[int, int] | None] = []
        for f in self.files:
            try:
                st = f.stat()
                out.append((st.st_mtime_ns, st.st_size))
            except OSError:
                out.append(None)
        return tuple(out)

    def reload(self, *, force: bool = True) -> None:
        with self._lock:
            stamp = self._mtimes()
            if not force and stamp == self._stamp:
                return
            self._rows = {f: read_rows(f) for f in self.files}
            self._styles = {}
            for f in self.files:
                for row in self._rows[f]:
                    if not row["name"].startswith("#"):  # A1111: "#" rows are comments/dividers
                        self._styles[row["name"]] = PromptStyle(row["name"], row["prompt"], row["negative_prompt"], f)
            self._stamp = stamp

    def _current(self) -> dict[str, PromptStyle]:
        self.reload(force=False)
        return self._styles

    # --- reading -------------------------------------------------------------------------------------------------
    def list(self) -> list[PromptStyle]:
        with self._lock:
            return list(self._current().values())

    def names(self) -> builtins.list[str]:
        return [s.name for s in self.list()]

    def api(self) -> builtins.list[dict[str, str]]:
        """GET /sdapi/v1/prompt-styles: [{name, prompt, negative_prompt}]."""
        return [s.api() for s in self.list()]

    def get(self, name: str) -> PromptStyle:
        with self._lock:
            style = self._current().get(name)
        if style is None:
            raise InvalidRequest(
                f"unknown style {name!r}",
                detail=f"styles: no style named {name!r}; GET /sdapi/v1/prompt-styles lists them",
            )
        return style

    def apply(self, prompt: str, negative: str, names: Iterable[str] | None) -> tuple[str, str]:
        """(prompt, negative) with the named styles applied in order. Every name is checked before anything is
        applied: an unknown one is an InvalidRequest naming it."""
        styles = [self.get(n) for n in (names or ())]
        for s in styles:
            prompt = merge_prompts(s.prompt, prompt)
            negative = merge_prompts(s.negative_prompt, negative)
        return prompt, negative

    def apply_to_request(self, req):
        """A generation request (pydantic) with its `styles` applied to prompt and negative_prompt, and to
        hr_prompt/hr_negative_prompt when those are set (empty ones fall back to the styled prompts), as A1111's
        setup_prompts does. `styles` itself is kept for info["styles"]."""
        names = list(getattr(req, "styles", None) or [])
        if not names:
            return req
        prompt, negative = self.apply(req.prompt, req.negative_prompt, names)
        update: dict[str, Any] = {"prompt": prompt, "negative_prompt": negative}
        hr_prompt, hr_negative = getattr(req, "hr_prompt", ""), getattr(req, "hr_negative_prompt", "")
        if hr_prompt or hr_negative:
            hp, hn = self.apply(hr_prompt or "", hr_negative or "", names)
            if hr_prompt:
                update["hr_prompt"] = hp
            if hr_negative:
                update["hr_negative_prompt"] = hn
        return req.model_copy(update=update)

    # --- writing -------------------------------------------------------------------------------------------------
    def save(self, name: str, prompt: str, negative_prompt: str) -> PromptStyle:
        """Create or replace a style. A new one goes to the first file; an existing one is rewritten in place."""
        name = " ".join((name or "").split())
        if not name or name.startswith("#"):
            raise InvalidRequest("a style needs a name (not starting with '#')")
        with self._lock:
            self.reload(force=True)  # never write over an edit made by hand since the last read
            existing = self._styles.get(name)
            path = existing.path if existing else self.files[0]
            rows = [dict(r) for r in self._rows.get(path, [])]
            row = {"name": name, "prompt": prompt or "", "negative_prompt": negative_prompt or ""}
            index = next((i for i, r in enumerate(rows) if r["name"] == name), None)
            if index is None:
                rows.append(row)
            else:
                rows[index] = row
            write_rows(path, rows)
            self.reload(force=True)
            return self._styles[name]

    def delete(self, name: str) -> None:
        with self._lock:
            self.reload(force=True)
            style = self._styles.get(name)
            if style is None:
                raise NotFound(f"unknown style {name!r}")
            write_rows(style.path, [r for r in self._rows[style.path] if r["name"] != name])
            self.reload(force=True)
