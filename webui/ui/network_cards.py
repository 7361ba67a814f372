"""The cards of the "Extra networks" panel as HTML (A1111's look): a fixed-size card per item with its preview
(a small JPEG inlined as a data URI, so no file route is needed), the name over the bottom of the preview, and a ⚙
button that opens the item's metadata (kohya `ss_*` fields from the safetensors header, A1111's user metadata).
The panel (extra_networks.py) builds `Card`s from the catalogs and handles the clicks."""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from webui.outputs import open_user_image

THUMB = 160  # px, the long side of a card's preview
PREVIEW_SUFFIXES = (".preview.png", ".png", ".preview.jpg", ".jpg", ".jpeg", ".preview.webp", ".webp")
KIND_LABELS = {"textual_inversion": "Textual Inversion", "checkpoints": "Checkpoints", "lora": "LoRA"}
NOUNS = {
    "textual_inversion": ("embedding", "embeddings"),
    "checkpoints": ("checkpoint", "checkpoints"),
    "lora": ("LoRA", "LoRAs"),
}


@dataclass
class Card:
    kind: str  # textual_inversion, checkpoints, lora
    name: str  # what a click uses: the embedding's word, the checkpoint's title, the LoRA's name
    label: str  # shown over the preview
    path: Path | None = None
    preview: Path | None = None
    sub: str = ""  # a second line (base model, dim/alpha, vectors)
    error: str | None = None
    search: str = ""  # extra text the search box matches (trigger tags, alias, folder)
    metadata: dict[str, Any] = field(default_factory=dict)  # ss_* and other header fields
    user: dict[str, Any] = field(default_factory=dict)  # A1111's <name>.json
    unfit: str | None = None  # why it does not fit the loaded checkpoint (a LoRA of another base): greyed out


def plural(n: int, kind: str) -> str:
    one, many = NOUNS[kind]
    return f"{n} {one if n == 1 else many}"


def find_preview(path: Path | None) -> Path | None:
    if path is None:
        return None
    stem = str(path.with_suffix("")) if path.is_file() else str(path)
    return next((Path(stem + s) for s in PREVIEW_SUFFIXES if Path(stem + s).is_file()), None)


def thumbnail_uri(preview: Path | None, cache: dict) -> str | None:
    """A data: URI of a small JPEG of the preview (cached by path and mtime), or None when there is none."""
    if preview is None:
        return None
    try:
        key = (str(preview), preview.stat().st_mtime_ns)
    except OSError:
        return None
    if key not in cache:
        try:
            with open_user_image(preview) as im:
                img = im.convert("RGB")
            img.thumbnail((THUMB, THUMB * 4 // 3))
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=85)
            cache[key] = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
        except (OSError, ValueError, Image.DecompressionBombError):  # unreadable: the card shows "no preview"
            cache[key] = None
    return cache[key]


def matches(card: Card, query: str | None) -> bool:
    """Every word of the query occurs (case-insensitive) in the name, label, second line or search text."""
    hay = " ".join([card.name, card.label, card.sub, card.search]).lower()
    return all(word in hay for word in (query or "").lower().split())


def card_html(card: Card, cache: dict) -> str:
    e = html.escape
    uri = thumbnail_uri(card.preview, cache)
    image = f'<img src="{uri}" alt="" loading="lazy">' if uri else '<div class="easel-card-empty">no preview</div>'
    sub = e(f"⚠ {card.error}" if card.error else card.sub)
    cls = "easel-card" + (" easel-card-error" if card.error else "") + (" easel-card-unfit" if card.unfit else "")
    tip = e(card.error or card.unfit or card.user.get("description") or card.name)
    return (
        f'<div class="{cls}" data-kind="{e(card.kind)}" data-name="{e(card.name)}" title="{tip}">{image}'
        f'<button class="easel-card-meta" title="Metadata" data-action="meta">⚙</button>'
        f'<div class="easel-card-name">{e(card.label)}{f"<small>{sub}</small>" if sub else ""}</div></div>'
    )


def cards_html(cards: list[Card], cache: dict, empty: str) -> str:
    if not cards:
        return f'<div class="easel-note">{html.escape(empty)}</div>'
    return '<div class="easel-cards">' + "".join(card_html(c, cache) for c in cards) + "</div>"


def metadata_html(card: Card) -> str:
    """The ⚙ view: what the card is, A1111's user metadata, then every header field (ss_* first)."""
    e = html.escape
    rows = [("Name", card.name), ("File", str(card.path or ""))]
    if card.error:
        rows.append(("Error", card.error))
    rows += [(k.capitalize(), str(v)) for k, v in card.user.items()]
    keys = sorted(card.metadata, key=lambda k: (not str(k).startswith("ss_"), str(k)))
    for key in keys:
        value = card.metadata[key]
        text = value if isinstance(value, str) else repr(value)
        rows.append((str(key), text if len(text) <= 2000 else text[:2000] + "…"))
    body = "".join(f"<tr><td><code>{e(k)}</code></td><td>{e(v)}</td></tr>" for k, v in rows)
    return (
        f'<div class="easel-metadata"><b>{e(KIND_LABELS.get(card.kind, card.kind))}: {e(card.label)}</b>'
        f"<table>{body}</table></div>"
    )


# The cards' clicks → the component's "click" event with {kind, name, action} (Gradio 6's gr.HTML trigger); one
# listener on the component, so cards re-rendered by a search or refresh need nothing new.
CARDS_JS = """
element.addEventListener('click', (event) => {
  const card = event.target.closest('.easel-card');
  if (!card) return;
  const meta = event.target.closest('[data-action=meta]');
  trigger('click', {kind: card.dataset.kind, name: card.dataset.name, action: meta ? 'meta' : 'use'});
});
"""
