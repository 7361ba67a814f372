"""Prompt-box tools for the txt2img/img2img tabs: A1111's token counters, the styles row, and Ctrl+Up/Down.

- `TokenCounter(application, tab, textbox)` + `.wire(steps)`: an "n/75" counter (growing in chunks of 75:
  "80/150") updated when the text changes, counted by webui.prompts.chunks.token_count with the active
  checkpoint's tokenizer (and its embeddings, which count as their vector count); for FLUX/SD 3 it adds T5's count
  ("12/75 · T5 14/512"). elem_ids as A1111:
  `<tab>_token_counter`, `<tab>_negative_token_counter`.
- `StylesRow(application, tab, prompt, negative)`: a multiselect styles dropdown (`<tab>_styles`, its value goes to
  the request's `styles`), Apply (writes the selected styles into the prompt boxes and clears the selection, so
  they are not applied twice), and, under "Edit styles", a name box with Save (the current prompt/negative under
  that name) and Delete.
- `PROMPT_JS`: A1111's Ctrl+Up/Down attention editing for every prompt textarea (`*_prompt`, `*_neg_prompt`): the
  selection (or, without one, the enclosing (…)/[…]/<…> block or the word at the caret) becomes `(text:1.1)`; an
  existing weight moves by ±0.1; `((x))`/`[x]` are first rewritten as `(x:1.2)`/`(x:0.9)`; a weight reaching 1
  drops its brackets; `<lora:name:w>` has its w adjusted. `prompt_tools_assets()` installs it from inside the
  Blocks (or pass mount_gradio_app(js=PROMPT_JS) / head=prompt_head()).
"""

from __future__ import annotations

import functools
import html
from typing import TYPE_CHECKING, Any

import gradio as gr

from webui.errors import EaselError
from webui.prompts.chunks import token_count
from webui.ui.messages import error_html, error_message, ok_html

if TYPE_CHECKING:
    from webui.app import Application


# --- token counters --------------------------------------------------------------------------------------------
@functools.cache
def _default_tokenizer():
    """Before a checkpoint is loaded: SD's CLIP tokenizer (every family counts with the same BPE)."""
    from webui.models.tokenizer import load_clip_tokenizer

    return load_clip_tokenizer()


def _tokenizer(application: Application):
    model = application.models.active
    if model is not None:
        return model.pipeline.tokenizer, model
    return _default_tokenizer(), None


def counter_text(application: Application, text: str | None, steps: Any = 20, *, negative: bool = False) -> str:
    """ "n/75" for the prompt box, as A1111 shows it (the longest text the prompt reads as at any step)."""
    tokenizer, model = _tokenizer(application)
    counts = application.embeddings.vector_counts(model) if model is not None else None
    try:
        n_steps = max(1, int(steps or 20))
    except (TypeError, ValueError):
        n_steps = 20
    tokens, limit = token_count(tokenizer, text or "", steps=n_steps, is_positive=not negative, embeddings=counts)
    family = model.probe.family.value if model is not None else None
    if family in ("flux", "sd3"):  # the T5 branch reads the plain text, up to its own length (webui/prompts/plain.py)
        from webui.prompts.plain import token_counts

        t5 = token_counts(
            model,
            text or "",
            n_steps,
            negative=negative,
            t5_max_length=int(application.options.get("t5_max_length") or 0),
        )["t5"]
        return f"{tokens}/{limit} · T5 {t5['tokens']}/{t5['max']}"
    return f"{tokens}/{limit}"


def counter_html(value: str) -> str:
    return f'<span class="easel-token-counter">{html.escape(value)}</span>'


class TokenCounter:
    """The "n/75" counter of one prompt box. Create it where it should show (under the box), then call `wire()`
    once the steps slider exists (prompt editing makes the count depend on the steps, as in A1111)."""

    def __init__(self, application: Application, tab: str, textbox: gr.Textbox, *, negative: bool = False):
        self.app, self.textbox, self.negative = application, textbox, negative
        elem = f"{tab}_negative_token_counter" if negative else f"{tab}_token_counter"
        self.html = gr.HTML(counter_html("0/75"), elem_id=elem, elem_classes=["easel-token-counter-box"], padding=False)

    def update(self, text: str | None, steps: Any = 20):
        try:
            return counter_html(counter_text(self.app, text, steps, negative=self.negative))
        except Exception:  # noqa: BLE001 - the counter is a hint: never an error popup while typing
            return gr.update()

    def wire(self, steps: gr.components.Component | None = None) -> None:
        inputs = [self.textbox] + ([steps] if steps is not None else [])
        for trigger in [self.textbox] + ([steps] if steps is not None else []):
            trigger.change(
                self.update,
                inputs=inputs,
                outputs=[self.html],
                queue=False,
                show_progress="hidden",
                trigger_mode="always_last",
                api_visibility="private",
            )


# --- styles ----------------------------------------------------------------------------------------------------
class StylesRow:
    def __init__(self, application: Application, tab: str, prompt: gr.Textbox, negative: gr.Textbox, *, before=None):
        """`before`: builds the tab's own tool buttons (↙️, 🗑️) at the start of the same row."""
        self.app, self.tab = application, tab
        self.prompt, self.negative = prompt, negative
        with gr.Row(elem_id=f"{tab}_styles_row", equal_height=True, elem_classes=["easel-tools"]):
            if before is not None:
                before()
            self.dropdown = gr.Dropdown(
                self._names(),
                value=[],
                multiselect=True,
                label="Styles",
                show_label=False,
                elem_id=f"{tab}_styles",
                scale=4,
                min_width=100,
                container=False,
            )
            self.refresh = gr.Button(
                "🔄", elem_id=f"{tab}_styles_refresh", scale=0, min_width=32, size="sm", elem_classes=["easel-tool"]
            )
            self.apply = gr.Button(
                "✅", elem_id=f"{tab}_style_apply", scale=0, min_width=32, size="sm", elem_classes=["easel-tool"]
            )
        with gr.Accordion("Edit styles", open=False, elem_id=f"{tab}_styles_edit"), gr.Row(equal_height=True):
            self.name = gr.Textbox(
                label="Style name",
                elem_id=f"{tab}_style_name",
                scale=4,
                placeholder="Save: the current prompt and negative prompt under this name",
            )
            self.save = gr.Button("Save", elem_id=f"{tab}_style_create", scale=0, min_width=70)
            self.delete = gr.Button("Delete", elem_id=f"{tab}_style_delete", scale=0, min_width=70)
        self.status = gr.HTML("", elem_id=f"{tab}_styles_status")
        self._wire()

    def _names(self) -> list[str]:
        return self.app.styles.names()

    def _wire(self) -> None:
        self.apply.click(
            self.on_apply,
            inputs=[self.prompt, self.negative, self.dropdown],
            outputs=[self.prompt, self.negative, self.dropdown, self.status],
            queue=False,
        )
        self.save.click(
            self.on_save,
            inputs=[self.name, self.prompt, self.negative, self.dropdown],
            outputs=[self.dropdown, self.status],
            queue=False,
        )
        self.delete.click(
            self.on_delete, inputs=[self.name, self.dropdown], outputs=[self.dropdown, self.status], queue=False
        )
        self.refresh.click(self.on_refresh, inputs=[self.dropdown], outputs=[self.dropdown], queue=False)

    def _choices(self, selected) -> dict[str, Any]:
        names = self._names()
        return gr.update(choices=names, value=[s for s in (selected or []) if s in names])

    def on_apply(self, prompt: str, negative: str, selected: list[str] | None):
        if not selected:
            return gr.update(), gr.update(), gr.update(), error_html("Select one or more styles to apply.")
        try:
            new_prompt, new_negative = self.app.styles.apply(prompt or "", negative or "", selected)
        except EaselError as e:
            return gr.update(), gr.update(), self._choices(selected), error_html(error_message(e))
        return new_prompt, new_negative, gr.update(value=[]), ok_html(f"Applied: {', '.join(selected)}")

    def on_save(self, name: str, prompt: str, negative: str, selected: list[str] | None):
        try:
            style = self.app.styles.save(name, prompt or "", negative or "")
        except (EaselError, OSError) as e:
            return gr.update(), error_html(error_message(e))
        return self._choices(selected), ok_html(f"Saved style {style.name!r} to {style.path.name}")

    def on_delete(self, name: str, selected: list[str] | None):
        targets = [name.strip()] if name and name.strip() else list(selected or [])
        if not targets:
            return gr.update(), error_html("Type a style name, or select styles, to delete.")
        try:
            for target in targets:
                self.app.styles.delete(target)
        except (EaselError, OSError) as e:
            return self._choices(selected), error_html(error_message(e))
        return self._choices(selected), ok_html(f"Deleted: {', '.join(targets)}")

    def on_refresh(self, selected: list[str] | None):
        return self._choices(selected)


# --- Ctrl+Up/Down ----------------------------------------------------------------------------------------------
PROMPT_JS = r"""
() => {
  if (window.easelEditAttention) return;
  const DELIMS = ".,\\/!?%^*;:{}=`~()\t\r\n ";  // A1111's keyedit_delimiters, plus whitespace
  const STEP = 0.1;
  const fmt = (w) => { w = parseFloat(w.toPrecision(12)); return Number.isInteger(w) ? w.toFixed(1) : String(w); };

  // inside of the open…close pair around the caret; without its ":weight" when it has one
  function block(text, pos, open, close) {
    if (pos === 0) return null;
    const left = text.lastIndexOf(open, pos - 1);
    if (left < 0 || text.lastIndexOf(close, pos - 1) > left) return null;
    const right = text.indexOf(close, pos);
    const nextOpen = text.indexOf(open, pos);
    if (right < 0 || (nextOpen >= 0 && nextOpen < right)) return null;
    const inner = text.slice(left + 1, right);
    const colon = inner.lastIndexOf(":");
    const weighted = colon >= 0 && /^\s*-?[\d.]+\s*$/.test(inner.slice(colon + 1));
    return [left + 1, left + 1 + (weighted ? colon : inner.length)];
  }

  function word(text, pos) {
    let s = pos, e = pos;
    while (s > 0 && !DELIMS.includes(text[s - 1])) s--;
    while (e < text.length && !DELIMS.includes(text[e])) e++;
    return s < e ? [s, e] : null;
  }

  // (text, selection, up?) -> {text, start, end} with the weight edited, or null when there is nothing to edit
  function edit(text, start, end, up) {
    if (start === end) {
      const sel = block(text, start, "<", ">") || block(text, start, "(", ")") || block(text, start, "[", "]")
        || word(text, start);
      if (!sel) return null;
      [start, end] = sel;
    }
    while (end > start && text[end - 1] === " ") end--;
    while (start < end && text[start] === " ") start++;
    if (start === end) return null;
    let close = ")";
    const before = start > 0 ? text[start - 1] : "", after = text[end];
    if (before === "<") {
      close = ">";
    } else if ((before === "(" && after === ")") || (before === "[" && after === "]")) {
      let n = 0;  // old-style emphasis: ((x)) is x×1.1², [x] is x÷1.1
      while (text[start - n - 1] === before && text[end + n] === after) n++;
      const w = Math.round(Math.pow(before === "[" ? 1 / 1.1 : 1.1, n) / STEP) * STEP;
      text = text.slice(0, start - n) + "(" + text.slice(start, end) + ":" + fmt(w) + ")" + text.slice(end + n);
      start -= n - 1;
      end -= n - 1;
    } else if (before !== "(") {
      text = text.slice(0, start) + "(" + text.slice(start, end) + ":1.0)" + text.slice(end);
      start++;
      end++;
    }
    if (text[end] !== ":") return null;
    const closeAt = text.indexOf(close, end + 1);
    let w = closeAt < 0 ? NaN : parseFloat(text.slice(end + 1, closeAt));
    if (isNaN(w)) return null;
    w = parseFloat((w + (up ? STEP : -STEP)).toPrecision(12));
    if (close === ")" && w === 1) {
      text = text.slice(0, start - 1) + text.slice(start, end) + text.slice(closeAt + 1);
      return {text, start: start - 1, end: end - 1};
    }
    return {text: text.slice(0, end + 1) + fmt(w) + text.slice(closeAt), start, end};
  }

  window.easelEditAttention = edit;
  document.addEventListener("keydown", (event) => {
    if (!(event.ctrlKey || event.metaKey) || (event.key !== "ArrowUp" && event.key !== "ArrowDown")) return;
    const ta = event.target;
    if (!ta || ta.tagName !== "TEXTAREA" || !ta.closest("[id$='_prompt']")) return;
    event.preventDefault();
    const r = edit(ta.value, ta.selectionStart, ta.selectionEnd, event.key === "ArrowUp");
    if (!r) return;
    ta.value = r.text;
    ta.setSelectionRange(r.start, r.end);
    ta.dispatchEvent(new Event("input", {bubbles: true}));  // Gradio reads the box on input
  });
}
"""


def prompt_head() -> str:
    """PROMPT_JS as a <script> for mount_gradio_app(head=...)."""
    return f"<script>({PROMPT_JS.strip()})();</script>"


def prompt_tools_assets() -> gr.HTML:
    """Call once inside the Blocks: an empty component whose js_on_load (Gradio 6) installs Ctrl+Up/Down for every
    prompt box on the page (the counters' CSS is in page_css). Nothing to pass to mount_gradio_app."""
    return gr.HTML(
        "", js_on_load=f"({PROMPT_JS.strip()})();", container=False, padding=False, elem_id="easel_prompt_tools"
    )
