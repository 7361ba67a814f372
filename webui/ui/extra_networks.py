"""The "Extra networks" panel of txt2img and img2img, as A1111's: tabs for Textual Inversion, Checkpoints and LoRA
(Easel has no hypernetworks, so no tab for them), each a grid of fixed-size cards with the name over the preview
(network_cards.py), a search box and a Refresh button. Clicking a card: a LoRA adds `<lora:name:weight>` (the
weight and activation text from A1111's user metadata `<name>.json` when it has them; clicking again takes the tag
out), an embedding adds its word (or takes it out), a checkpoint becomes the active one (and the top bar says so).
⚙ on a card shows its metadata: the kohya `ss_*` fields of the safetensors header and the user metadata. A card
that can't be used shows why instead."""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from typing import TYPE_CHECKING, Any

import gradio as gr

from webui.models.user_metadata import read_user_metadata
from webui.ui.network_cards import CARDS_JS, KIND_LABELS, Card, cards_html, find_preview, matches, metadata_html, plural

if TYPE_CHECKING:
    from webui.app import Application

TOP_TAGS = 8  # trigger tags a LoRA card can be found by
LORA_TAG = re.compile(r"<lora:([^:>]+)(?::[^>]*)?>")
KINDS = ("textual_inversion", "checkpoints", "lora")
CHECKPOINT_ELEM = "setting_sd_model_checkpoint"  # the top bar's dropdown (quicksettings.py)


# --- entries → cards --------------------------------------------------------------------------------------------


def trigger_tags(metadata: dict[str, Any], limit: int = TOP_TAGS) -> list[str]:
    """The most frequent tags of `ss_tag_frequency` ({dataset: {tag: count}}), summed over datasets."""
    freq = metadata.get("ss_tag_frequency")
    if isinstance(freq, str):
        try:
            freq = json.loads(freq)
        except ValueError:
            return []
    counts: Counter[str] = Counter()
    for tags in freq.values() if isinstance(freq, dict) else ():
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


def lora_card(entry: dict[str, Any], active: tuple[str, str] | None = None) -> Card:
    """A card from a `LoraEntry.to_api()` dict; `active`: the loaded checkpoint's (family value, label), against
    which a LoRA made for another base is greyed out with the reason as its title."""
    from pathlib import Path

    from webui.lora.base_family import LABELS, lora_base, unfit_reason

    meta = entry.get("metadata") or {}
    path = Path(entry["path"]) if entry.get("path") else None
    user = read_user_metadata(path) if path else {}
    family = lora_base(entry.get("family"), meta, user)
    base = " · ".join(str(x) for x in (LABELS.get(family or ""), meta.get("ss_sd_model_name")) if x)
    dim, alpha = meta.get("ss_network_dim"), meta.get("ss_network_alpha")
    sub = " · ".join(x for x in (base, f"dim {dim}/alpha {alpha}" if dim is not None or alpha is not None else "") if x)
    alias = entry.get("alias") or entry["name"]
    return Card(
        "lora",
        entry["name"],
        entry["name"],
        path=path,
        preview=Path(entry["preview"]) if entry.get("preview") else None,
        sub=sub,
        error=entry.get("error"),
        search=" ".join([alias, str(path or ""), *trigger_tags(meta), LABELS.get(family or "", "")]),
        metadata=dict(meta),
        user=user,
        unfit=unfit_reason(family, *(active or (None, ""))),
    )


def toggle_word(prompt: str | None, word: str) -> tuple[str, bool]:
    """(new prompt, added): an embedding's word appended after ", ", or taken out when the prompt has it."""
    prompt = prompt or ""
    pattern = re.compile(rf"(^|[\s,(\[]){re.escape(word)}(?=$|[\s,)\]:])")
    if pattern.search(prompt):
        out = pattern.sub(lambda m: m.group(1), prompt)
        return re.sub(r"\s*,\s*(,\s*)+", ", ", out).strip(" ,"), False
    stripped = prompt.rstrip(" ,")
    return (f"{stripped}, {word}" if stripped else word), True


def toggle_tag(prompt: str | None, name: str, weight: float = 1) -> tuple[str, bool]:
    """(new prompt, added): append `<lora:name:weight>` after a space (A1111's default separator), or, when the
    prompt already has a tag for `name`, take it out, as A1111's cards do."""
    prompt = prompt or ""
    existing = [m for m in LORA_TAG.finditer(prompt) if m.group(1) == name]
    if existing:
        for m in reversed(existing):
            left, right = prompt[: m.start()], prompt[m.end() :]
            before, after = left.rstrip(" ,"), right.lstrip(" ,")
            sep = ", " if "," in left[len(before) :] + right[: len(right) - len(after)] else " "
            prompt = f"{before}{sep}{after}" if before and after else before or after
        return prompt, False
    tag = f"<lora:{name}:{weight:g}>"
    stripped = prompt.rstrip()
    return (f"{stripped} {tag}" if stripped else tag), True


def header_metadata(path) -> dict[str, Any]:
    """The `__metadata__` of a safetensors file's header (read without loading tensors); {} for other files."""
    from safetensors import safe_open

    if path is None or str(path).lower().rsplit(".", 1)[-1] != "safetensors":
        return {}
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return dict(f.metadata() or {})
    except Exception:  # noqa: BLE001 - an unreadable header: no metadata to show, the card still works
        return {}


# --- the panel --------------------------------------------------------------------------------------------------


class ExtraNetworksPanel:
    """An accordion with the cards for the tab `tabname`; clicks write into the `prompt` textbox."""

    def __init__(self, application: Application, tabname: str, prompt: gr.Textbox):
        self.app, self.tabname, self.prompt = application, tabname, prompt
        self.thumbs: dict = {}  # (preview path, mtime) → data URI: previews are read once per page server
        t = tabname
        htmls, status = self.render("")
        with gr.Accordion("Extra networks", open=False, elem_id=f"{t}_extra_networks") as self.accordion:
            with gr.Row():
                self.search = gr.Textbox(
                    label="Search",
                    show_label=False,
                    placeholder="Search…",
                    scale=6,
                    elem_id=f"{t}_extra_networks_search",
                )
                self.refresh = gr.Button(
                    "Refresh", size="sm", scale=0, min_width=90, elem_id=f"{t}_extra_networks_refresh"
                )
            self.status = gr.HTML(status, elem_id=f"{t}_extra_networks_status")
            self.cards: dict[str, gr.HTML] = {}
            with gr.Tabs(elem_id=f"{t}_extra_tabs", selected="lora"):
                for kind in KINDS:
                    with gr.Tab(KIND_LABELS[kind], id=kind, elem_id=f"{t}_{kind}_tab"):
                        self.cards[kind] = gr.HTML(htmls[kind], js_on_load=CARDS_JS, elem_id=f"{t}_{kind}_cards")
            self.details = gr.HTML("", elem_id=f"{t}_extra_details")
        self.checkpoint = self.top_bar_checkpoint()
        self.wire()

    @staticmethod
    def top_bar_checkpoint():
        """The top bar's checkpoint dropdown when it is on this page (built before the tabs), so a checkpoint card
        can show its switch there; None when the panel is built alone."""
        from gradio.context import get_blocks_context

        ctx = get_blocks_context()
        blocks = ctx.blocks.values() if ctx is not None else ()
        return next((b for b in blocks if getattr(b, "elem_id", None) == CHECKPOINT_ELEM), None)

    # --- cards ----------------------------------------------------------------------------------------------------
    def cards_of(self, kind: str) -> list[Card]:
        if kind == "lora":
            model = self.app.models.active
            active = (model.probe.family.value, model.probe.label) if model is not None else None
            return [lora_card(e, active) for e in self.app.loras.list()]
        if kind == "checkpoints":
            out = []
            for info in self.app.catalog.list():
                out.append(
                    Card(
                        "checkpoints",
                        info.title,
                        info.name.rsplit(".", 1)[0],
                        path=info.path,
                        preview=find_preview(info.path),
                        sub=info.shorthash,
                        user=read_user_metadata(info.path),
                    )
                )
            return out
        catalog = self.app.embeddings
        api = catalog.api(self.app.models.active)
        embeddings = catalog.all()
        out = []
        for name in sorted({*api["loaded"], *api["skipped"]}, key=str.lower):
            e = embeddings.get(name)
            found = api["loaded"].get(name) or api["skipped"].get(name) or {}
            path = e.path if e is not None else None
            out.append(
                Card(
                    "textual_inversion",
                    name,
                    name,
                    path=path,
                    preview=find_preview(path),
                    sub=f"{found.get('vectors', 0)} vector(s)",
                    error=api["skipped"].get(name, {}).get("reason"),
                    user=read_user_metadata(path) if path else {},
                )
            )
        return out

    def render(self, query: str | None) -> tuple[dict[str, str], str]:
        """({kind: cards HTML}, status HTML) for the items matching `query`."""
        htmls, counts = {}, []
        for kind in KINDS:
            cards = self.cards_of(kind)
            shown = [c for c in cards if matches(c, query)]
            empty = (
                f"Nothing matches {query!r}"
                if cards
                else {
                    "lora": f"No LoRAs in {self.app.paths.lora_dir}",
                    "textual_inversion": f"No embeddings in {self.app.paths.embeddings_dir}",
                    "checkpoints": "No checkpoints",
                }[kind]
            )
            htmls[kind] = cards_html(shown, self.thumbs, empty)
            counts.append(
                f"{len(shown)} of {plural(len(cards), kind)}" if query and query.strip() else plural(len(cards), kind)
            )
        return htmls, f'<div class="easel-note">{html.escape(" · ".join(counts))}</div>'

    def find(self, kind: str, name: str) -> Card | None:
        return next((c for c in self.cards_of(kind) if c.name == name), None) if kind in KINDS else None

    # --- events ---------------------------------------------------------------------------------------------------
    def wire(self) -> None:
        outputs = [*self.cards.values(), self.status]
        # opening the panel shows the current lists (files trained or refreshed through the API since the page loaded)
        self.accordion.expand(self.on_search, inputs=[self.search], outputs=outputs, queue=False)
        self.search.change(self.on_search, inputs=[self.search], outputs=outputs, queue=False)
        self.refresh.click(self.on_refresh, inputs=[self.search], outputs=outputs, queue=False)
        click_outputs = [self.prompt, self.status, self.details] + ([self.checkpoint] if self.checkpoint else [])
        for cards in self.cards.values():
            cards.click(self.on_card, inputs=[self.prompt], outputs=click_outputs, api_visibility="private")

    def on_search(self, query: str | None):
        htmls, status = self.render(query)
        return (*(htmls[k] for k in KINDS), status)

    def on_refresh(self, query: str | None):
        self.app.loras.refresh()
        self.app.embeddings.refresh()
        return self.on_search(query)

    def on_card(self, prompt: str | None, evt: gr.EventData):
        data = getattr(evt, "_data", None) or {}
        out = self.click(str(data.get("kind", "")), str(data.get("name", "")), prompt, str(data.get("action", "")))
        return out if self.checkpoint else out[:3]

    def click(self, kind: str, name: str, prompt: str | None, action: str = "use"):
        """(prompt update, status HTML, details HTML, checkpoint dropdown update) for a click on a card."""
        keep = gr.update()
        card = self.find(kind, name)
        if card is None:
            return keep, error(f"{name or 'That item'} is gone: press Refresh"), keep, keep
        if action == "meta":
            if not card.metadata and card.path is not None:
                card.metadata = header_metadata(card.path)
            return keep, keep, metadata_html(card), keep
        if card.error:
            return keep, error(f"{KIND_LABELS[kind]} {name} cannot be used: {card.error}"), keep, keep
        if kind == "checkpoints":
            try:
                model = self.app.switch_checkpoint(name)
            except Exception as e:  # noqa: BLE001 - a load error is shown; the previous model stays active
                from webui.ui.prompt_tools import error_message

                return keep, error(error_message(e)), keep, keep
            return keep, ok(f"Loaded {model.info.title}"), keep, gr.update(value=model.info.title)
        if kind == "textual_inversion":
            new, added = toggle_word(prompt, name)
            return new, ok(f"{'Added' if added else 'Removed'} {name}"), keep, keep
        weight = card.user.get("preferred weight") or 1
        new, added = toggle_tag(prompt, name, weight)
        activation = card.user.get("activation text")
        if added and activation and activation not in new:
            new = f"{new} {activation}"
        return new, ok(f"{'Added' if added else 'Removed'} <lora:{name}:{weight:g}>"), keep, keep


def error(message: str) -> str:
    return f'<div class="easel-error">{html.escape(message)}</div>'


def ok(message: str) -> str:
    return f'<div class="easel-ok">{html.escape(message)}</div>'
