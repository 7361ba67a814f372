"""The "Extra networks" panel of txt2img and img2img: a card per LoRA (preview, name, base model, dim/alpha, the
most frequent training tags from `ss_tag_frequency`), a search box, and a Refresh button. Clicking a card adds
`<lora:name:1>` to the tab's prompt (and, as in A1111, clicking it again takes the tag out); a LoRA that cannot be
used shows its error instead. The cards are a `gr.Gallery` (previews, or a placeholder) with an HTML list of the
same cards' details below it; the names shown, in order, are kept in a `PageValue` so a click's index finds its
entry even after a search or a refresh."""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image, ImageDraw

from webui.outputs import open_user_image
from webui.ui.page_value import PageValue

THUMB = 256  # previews are shown as thumbnails of at most this size
TOP_TAGS = 8  # trigger tags shown per card
LORA_TAG = re.compile(r"<lora:([^:>]+)(?::[^>]*)?>")


# --- entries → what a card shows --------------------------------------------------------------------------------

def trigger_tags(metadata: dict[str, Any], limit: int = TOP_TAGS) -> list[str]:
    """The most frequent tags of `ss_tag_frequency` ({dataset: {tag: count}}), summed over datasets."""
    freq = metadata.get("ss_tag_frequency")
    if isinstance(freq, str):
        try:
            freq = json.loads(freq)
        except ValueError:
            return []
    counts: Counter[str] = Counter()
    for tags in (freq.values() if isinstance(freq, dict) else ()):
        if not isinstance(tags, dict):
            continue
        for tag, n in tags.items():
            tag = str(tag).strip()
            try:
                counts[tag] += int(n)
            except (TypeError, ValueError):
                continue
    counts.pop("", None)
    return [t for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]]


def card_info(entry: dict[str, Any]) -> dict[str, Any]:
    """The facts a card shows, from a `LoraEntry.to_api()` dict."""
    meta = entry.get("metadata") or {}
    base = meta.get("ss_base_model_version") or ""
    model = meta.get("ss_sd_model_name") or ""
    return {"name": entry["name"], "alias": entry.get("alias") or entry["name"], "error": entry.get("error"),
            "base": " · ".join(str(x) for x in (base, model) if x),
            "dim": meta.get("ss_network_dim"), "alpha": meta.get("ss_network_alpha"),
            "tags": trigger_tags(meta), "path": entry.get("path") or ""}


def caption(info: dict[str, Any]) -> str:
    parts = [info["name"]]
    if info["error"]:
        parts.append("⚠ error")
    if info["base"]:
        parts.append(info["base"])
    if info["dim"] is not None or info["alpha"] is not None:
        parts.append(f"dim {info['dim'] if info['dim'] is not None else '?'}"
                     f"/alpha {info['alpha'] if info['alpha'] is not None else '?'}")
    return " · ".join(parts)


def card_html(info: dict[str, Any]) -> str:
    e = html.escape
    rows = [f"<b>{e(info['name'])}</b>" + (f" ({e(info['alias'])})" if info["alias"] != info["name"] else "")]
    if info["error"]:
        rows.append(f'<span class="easel-error">{e(info["error"])}</span>')
    if info["base"]:
        rows.append(f"Base model: {e(info['base'])}")
    if info["dim"] is not None or info["alpha"] is not None:
        rows.append(f"Dim/alpha: {e(str(info['dim']))}/{e(str(info['alpha']))}")
    if info["tags"]:
        rows.append("Trigger tags: " + ", ".join(f"<code>{e(t)}</code>" for t in info["tags"]))
    return f'<div class="easel-lora-card" data-name="{e(info["name"])}">' + "<br>".join(rows) + "</div>"


def matches(info: dict[str, Any], query: str) -> bool:
    """Every word of the query occurs (case-insensitive) in the name, alias, path, base model or trigger tags."""
    hay = " ".join([info["name"], info["alias"], str(info["path"]), info["base"], *info["tags"]]).lower()
    return all(word in hay for word in (query or "").lower().split())


def placeholder(name: str, error: bool = False) -> Image.Image:
    img = Image.new("RGB", (THUMB, THUMB), (120, 40, 40) if error else (70, 70, 80))
    draw = ImageDraw.Draw(img)
    draw.text((12, THUMB // 2 - 20), "error" if error else "no preview", fill=(230, 230, 230))
    draw.text((12, THUMB // 2), name[:36], fill=(255, 255, 255))
    return img


def preview_image(info: dict[str, Any], preview: str | None) -> Image.Image:
    if preview and Path(preview).is_file():
        try:
            with open_user_image(preview) as im:
                img = im.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError):  # unreadable: the placeholder will do
            img = None
        if img is not None:
            img.thumbnail((THUMB, THUMB))
            return img
    return placeholder(info["name"], error=bool(info["error"]))


def toggle_tag(prompt: str | None, name: str, weight: float = 1) -> tuple[str, bool]:
    """(new prompt, added): append `<lora:name:weight>` after a space (A1111's default separator), or, when the
    prompt already has a tag for `name`, take it out, as A1111's cards do."""
    prompt = prompt or ""
    existing = [m for m in LORA_TAG.finditer(prompt) if m.group(1) == name]
    if existing:
        for m in reversed(existing):
            left, right = prompt[:m.start()], prompt[m.end():]
            before, after = left.rstrip(" ,"), right.lstrip(" ,")
            sep = ", " if "," in left[len(before):] + right[:len(right) - len(after)] else " "
            prompt = f"{before}{sep}{after}" if before and after else before or after
        return prompt, False
    tag = f"<lora:{name}:{weight:g}>"
    stripped = prompt.rstrip()
    return (f"{stripped} {tag}" if stripped else tag), True


# --- the panel --------------------------------------------------------------------------------------------------

class ExtraNetworksPanel:
    """An accordion with the LoRA cards for the tab `tabname`; clicks write into the `prompt` textbox."""

    def __init__(self, application, tabname: str, prompt: gr.Textbox):
        self.app, self.tabname, self.prompt = application, tabname, prompt
        t = tabname
        gallery, names, details, count = self.render("")
        with gr.Accordion("Extra networks", open=False, elem_id=f"{t}_extra_networks") as self.accordion:
            with gr.Row():
                self.search = gr.Textbox(label="Search", show_label=False, placeholder="Search LoRAs…", scale=6,
                                         elem_id=f"{t}_extra_networks_search")
                self.refresh = gr.Button("Refresh", size="sm", scale=0, min_width=90,
                                         elem_id=f"{t}_extra_networks_refresh")
            self.status = gr.HTML(count, elem_id=f"{t}_extra_networks_status")
            self.gallery = gr.Gallery(gallery, label="LoRA", show_label=False, format="png", columns=6,
                                      height=320, object_fit="cover", allow_preview=False, interactive=False,
                                      elem_id=f"{t}_lora_cards")
            self.details = gr.HTML(details, elem_id=f"{t}_lora_details")
            self.names = PageValue(names)
        self.wire()

    def entries(self) -> list[dict[str, Any]]:
        return list(self.app.loras.list())

    def render(self, query: str | None):
        """(gallery value, names shown, details HTML, status HTML) for the entries matching `query`."""
        shown = []
        for entry in self.entries():
            info = card_info(entry)
            if matches(info, query or ""):
                shown.append((entry, info))
        gallery = [(preview_image(info, entry.get("preview")), caption(info)) for entry, info in shown]
        details = "".join(card_html(info) for _, info in shown)
        total = len(self.entries())
        status = (f"{len(shown)} of {total} LoRAs" if query and query.strip() else f"{total} LoRAs") \
            if total else f"No LoRAs in {html.escape(str(self.app.paths.lora_dir))}"
        return gallery, [entry["name"] for entry, _ in shown], details, f'<div class="easel-note">{status}</div>'

    def wire(self) -> None:
        outputs = [self.gallery, self.names, self.details, self.status]
        # opening the panel shows the current list (LoRAs trained or refreshed through the API since the page loaded)
        self.accordion.expand(self.on_search, inputs=[self.search], outputs=outputs, queue=False)
        self.search.change(self.on_search, inputs=[self.search], outputs=outputs, queue=False)
        self.refresh.click(self.on_refresh, inputs=[self.search], outputs=outputs, queue=False)
        self.gallery.select(self.on_select, inputs=[self.names, self.prompt], outputs=[self.prompt, self.status],
                            queue=False)

    # --- handlers -------------------------------------------------------------------------------------------------
    def on_search(self, query: str | None):
        gallery, names, details, status = self.render(query)
        return gr.update(value=gallery, selected_index=None), names, details, status

    def on_refresh(self, query: str | None):
        self.app.loras.refresh()
        return self.on_search(query)

    def click(self, names: list[str] | None, prompt: str | None, index: Any):
        """(new prompt or gr.update(), status HTML) for a click on card `index` of the cards `names`."""
        names = list(names or [])
        i = index if isinstance(index, int) else (index[0] if isinstance(index, (list, tuple)) and index else -1)
        if not isinstance(i, int) or not 0 <= i < len(names):
            return gr.update(), ""
        entry = next((e for e in self.entries() if e["name"] == names[i]), None)
        if entry is None:
            return gr.update(), f'<div class="easel-error">LoRA {html.escape(names[i])} is gone: press Refresh</div>'
        if entry.get("error"):
            msg = f"LoRA {entry['name']} cannot be used: {entry['error']}"
            return gr.update(), f'<div class="easel-error">{html.escape(msg)}</div>'
        new, added = toggle_tag(prompt, entry["name"])
        verb = "Added" if added else "Removed"
        return new, f'<div class="easel-ok">{verb} &lt;lora:{html.escape(entry["name"])}:1&gt;</div>'

    def on_select(self, names: list[str] | None, prompt: str | None, evt: gr.SelectData):
        return self.click(names, prompt, evt.index)
