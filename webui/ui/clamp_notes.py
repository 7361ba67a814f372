"""A Width or Height typed beyond its slider (e.g. 4096 where the slider stops at 2048) is clamped to the slider's
bound, and a note beside it says so (#19 item 17).

It runs in the page: Gradio 6.31's slider keeps a typed number beyond its maximum in the number box (and would send
it), so a capturing listener (installed once by an empty gr.HTML's js_on_load, the pattern prompt_tools uses) sets
the box to the slider's bound when the number is committed (Enter or leaving the box) and puts the note beside it.
The server's own size limits (max_generation_pixels) still apply to whatever arrives."""

from __future__ import annotations

import gradio as gr

CLAMP_JS = r"""
(() => {
  if (window.easelClampNotes) return;
  window.easelClampNotes = true;
  const typed = new WeakMap();
  const sizeBox = (el) => el instanceof HTMLInputElement && el.type === 'number'
    && el.closest('[id$="_width"], [id$="_height"]');
  const commit = (input) => {
    const box = sizeBox(input);
    if (!box || !typed.has(input)) return;
    const value = parseFloat(typed.get(input));
    typed.delete(input);
    const max = parseFloat(input.max), min = parseFloat(input.min);
    const over = isFinite(value) && isFinite(max) && value > max;
    const under = isFinite(value) && isFinite(min) && value < min;
    if (!over && !under) return;
    const to = over ? max : min;
    input.value = String(to);  // the slider's own number box keeps what was typed: set the value really used
    input.dispatchEvent(new Event('input', {bubbles: true}));
    const note = document.createElement('div');
    note.className = 'easel-notice easel-clamp-note';
    const what = box.id.endsWith('_width') ? 'Width' : 'Height';
    note.textContent = `${what} ${value} was clamped to ${to}: the slider goes from ${min} to ${max}.`;
    box.appendChild(note);
  };
  document.addEventListener('input', (e) => {
    const box = e.isTrusted && sizeBox(e.target);
    if (!box) return;
    typed.set(e.target, e.target.value);
    box.querySelectorAll('.easel-clamp-note').forEach((n) => n.remove());
  }, true);
  document.addEventListener('change', (e) => commit(e.target), true);
  document.addEventListener('keydown', (e) => { if (e.key === 'Enter') commit(e.target); }, true);
})();
"""


def clamp_notes_assets() -> gr.HTML:
    """Call once inside the Blocks."""
    return gr.HTML("", js_on_load=CLAMP_JS.strip() + ";", container=False, padding=False, elem_id="easel_clamp_notes")
