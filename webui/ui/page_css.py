"""All of the page's CSS, in one place. Gradio 6 takes it as `mount_gradio_app(css=…)` (the `css` of
`gr.Blocks(…)` moved to launch()/mount_gradio_app in 6.0, and mount_gradio_app overwrites `blocks.css` with its own
argument, so CSS given to the Blocks would be lost): `webui.api.server.mount_ui` passes `PAGE_CSS`.

Colours come from Gradio's theme variables, which have dark variants (`.dark` on the page with `?__theme=dark` or
the browser's dark preference); the few colours the theme has no variable for (a green "done" line, an amber
warning) are Easel variables set for both modes below. Nothing is a fixed light colour."""

from __future__ import annotations

from webui.ui.extensions_tab import HEADERS as EXTENSION_COLUMNS
from webui.ui.history_tab import COLUMNS

PROMPT_COLUMN = COLUMNS.index("Prompt / result")

THEME_VARS = """
:root { --easel-ok-text: #166534; --easel-warn-text: #92400e; --easel-progress: var(--color-accent); }
:root .dark, .dark { --easel-ok-text: #86efac; --easel-warn-text: #fcd34d; }
"""

MESSAGES = """
.easel-error { color: var(--error-text-color); background: var(--error-background-fill);
               border: 1px solid var(--error-border-color); border-radius: var(--radius-md);
               padding: 6px 10px; margin: 4px 0; white-space: pre-wrap; }
.easel-note, .easel-notice { color: var(--body-text-color); background: var(--background-fill-secondary);
              border: 1px solid var(--border-color-primary); border-left: 4px solid var(--color-accent);
              border-radius: var(--radius-md); padding: 6px 10px; margin: 2px 0; }
.easel-ok { color: var(--easel-ok-text); padding: 4px 0; }
.easel-warn { color: var(--easel-warn-text); font-weight: 600; }
.easel-infotext { font-size: 0.9em; white-space: pre-wrap; word-break: break-word; }
.easel-progress { font-family: monospace; min-height: 1.4em; }
.easel-progress progress, progress { accent-color: var(--easel-progress); width: 100%; }
#easel_footer { text-align: center; color: var(--body-text-color); opacity: 0.75; font-size: 0.85em; }
"""

# A1111's compact top row: small square tool buttons, the token counters inside the prompt boxes' corner, no empty
# blocks for the page's helper components, the live preview over the gallery instead of above it.
LAYOUT = """
#easel_prompt_tools { display: none; }
/* an empty gr.HTML (a status line with nothing to say, the demo note for a real model) takes no place */
.block.hide-container:has(> .html-container > .prose:empty) { display: none !important; }
#quicksettings { gap: 8px; align-items: end; margin-top: -8px; }
#quicksettings button, .easel-tool, #txt2img_seed_row button, #img2img_seed_row button {
  max-width: 2.4em; min-width: 2em !important; padding: 4px; font-size: 1.05em; }
@media (max-width: 640px) { #quicksettings { flex-wrap: nowrap !important; }
  /* the dropdowns' form wrappers carry min-width: min(420px, 100%): at 400 px the 🔄 fell off the right edge */
  #quicksettings > .form { min-width: 0 !important; flex: 1 1 0% !important; }
  #setting_sd_model_checkpoint { min-width: 0 !important; flex: 1 1 auto !important; }
  /* two dropdowns side by side at 400 px cut their value under the caret ("sub/tiny-b.safeten▾"): own line */
  #train_checkpoint, #models_install_folder { min-width: 100% !important; } }
.easel-tools { gap: 4px !important; flex-wrap: nowrap !important; align-items: center; }
.easel-tools .easel-tool { flex: none !important; }
.easel-prompt-wrap { position: relative; gap: 0 !important; }
.easel-prompt-wrap .easel-token-counter-box { position: absolute; top: 4px; right: 8px; z-index: 5; margin: 0;
  padding: 0 4px; pointer-events: none; background: var(--input-background-fill); border-radius: var(--radius-sm);
  width: auto !important; min-width: 0 !important; }
.easel-token-counter { font-size: 0.8em; color: var(--body-text-color); opacity: 0.7; font-family: monospace; }
.easel-toggle-wrap { position: relative; gap: 0 !important; }
/* Hires fix's Enable over its accordion's header row (Gradio 6 has no header slot): a sibling of the header button,
   so a click on it never toggles the accordion; aligned with the header's text (the accordion's 1 px border and
   10 px padding: tests/ui/test_layout.py measures it), no box of its own */
.easel-toggle-wrap > .easel-header-toggle { position: absolute; top: 11px; right: 40px; z-index: 10;
  width: auto !important; min-width: 0 !important; flex: none !important; background: transparent !important;
  padding: 0 !important; border: none !important; box-shadow: none !important; overflow: visible !important; }
.easel-header-toggle label { padding: 0 !important; gap: 6px; align-items: center; color: var(--body-text-color); }
.easel-header-toggle input:focus-visible { outline: 2px solid var(--color-accent); outline-offset: 2px; }
.easel-disclosure summary { cursor: pointer; color: var(--body-text-color); opacity: 0.8; font-size: 0.9em; }
.easel-disclosure ul { margin: 4px 0 0 1.2em; font-size: 0.85em; color: var(--body-text-color); }
.easel-unit-needs { font-size: 0.9em; color: var(--body-text-color); opacity: 0.85; }
.easel-hr-size { color: var(--body-text-color); opacity: 0.8; font-size: 0.9em; }
.easel-results { position: relative; }
.easel-results .easel-live-preview { position: absolute; top: 0; left: 0; right: 0; z-index: 4;
  pointer-events: none; }
/* tables: a column header breaks between words, never inside one ("Versio/n" at 400 px) */
.table-wrap th .header-content span { word-break: normal !important; overflow-wrap: normal !important; }
.easel-image-buttons { gap: 4px; flex-wrap: wrap; }
.easel-image-buttons button { flex: 1 1 auto; }
"""

# Extra networks: fixed-size cards, the name over the bottom of the preview (A1111's look)
CARDS = """
.easel-cards { display: flex; flex-wrap: wrap; gap: 8px; max-height: 440px; overflow-y: auto; padding: 2px; }
.easel-card { position: relative; width: 148px; height: 196px; border-radius: var(--radius-md); overflow: hidden;
  border: 1px solid var(--border-color-primary); background: var(--background-fill-secondary); cursor: pointer;
  flex: 0 0 auto; }
.easel-card:hover { border-color: var(--color-accent); }
.easel-card img { width: 100%; height: 100%; object-fit: cover; display: block; }
.easel-card .easel-card-empty { width: 100%; height: 100%; display: flex; align-items: center;
  justify-content: center; color: var(--body-text-color); opacity: 0.6; font-size: 0.8em; }
.easel-card .easel-card-name { position: absolute; left: 0; right: 0; bottom: 0; padding: 4px 6px;
  background: rgba(0, 0, 0, 0.62); color: #fff; font-size: 0.85em; font-weight: 600; word-break: break-word; }
.easel-card .easel-card-name small { display: block; font-weight: 400; color: #e5e5e5; font-size: 0.85em; }
.easel-card.easel-card-error { border-color: var(--error-border-color); }
.easel-card.easel-card-unfit { opacity: 0.45; filter: grayscale(1); }  /* a LoRA made for another base model */
.easel-card .easel-card-meta { position: absolute; top: 4px; right: 4px; z-index: 2; border: none;
  border-radius: var(--radius-sm); background: rgba(0, 0, 0, 0.55); color: #fff; cursor: pointer;
  padding: 1px 5px; font-size: 0.9em; }
.easel-metadata table { border-collapse: collapse; font-size: 0.85em; }
.easel-metadata td { border: 1px solid var(--border-color-primary); padding: 2px 6px; vertical-align: top;
  word-break: break-word; color: var(--body-text-color); }
"""


# Tables at phone width (#19): each row becomes a card (the leading columns on one line, the main column on its own
# line, then the rest, each labelled), no sideways scrolling. Gradio 6's Dataframe draws its body as absolutely
# placed div rows (.virtual-row, cells .body-cell[data-col]) in a 500 px viewport: here they flow, all rows shown.
def table_cards(elem_id: str, columns: list[str], main: int, unlabelled: tuple[str, ...] = ()) -> str:
    """CSS turning the Dataframe `elem_id` into cards under 640 px: columns up to `main` on the first line, column
    `main` on a line of its own, the later ones after it, labelled with their header (except `unlabelled`)."""
    t = f"#{elem_id}"
    labels = "".join(
        f'  {t} .body-cell[data-col="{i}"]::before {{ content: "{name}"; opacity: 0.7; margin-right: 4px; }}\n'
        for i, name in enumerate(columns)
        if i > main and name not in unlabelled
    )
    return f"""
@media (max-width: 640px) {{
  /* the header row and Gradio's hidden sizing rows: still laid out (the table measures them), but take no room */
  {t} .header-table {{ display: block; width: 100% !important; height: 0; overflow: hidden; }}
  {t} .virtual-table-viewport {{ max-height: none !important; overflow-x: hidden !important; }}
  {t} .virtual-body {{ height: auto !important; width: 100% !important; }}
  {t} .virtual-row {{ position: static !important; transform: none !important; display: flex !important;
    flex-wrap: wrap; gap: 2px 10px; padding: 6px 8px; border-bottom: 1px solid var(--border-color-primary); }}
  {t} .body-cell {{ width: auto !important; flex: 0 1 auto !important; min-width: 0 !important;
    box-shadow: none !important; background: transparent !important; }}
  {t} .body-cell, {t} .body-cell .cell-wrap {{ display: flex !important;
    flex-direction: row !important; align-items: baseline !important; padding: 0 !important; min-height: 0 !important;
    height: auto !important; border: none !important; }}
  {t} .body-cell:has(.cell-wrap > span.text:empty) {{ display: none !important; }}  /* no bare labels */
  {t} .body-cell[data-col="{main}"] {{ flex: 1 0 100% !important; order: 1; }}
  {t} .body-cell:nth-child(n+{main + 2}) {{ order: 2; font-size: 0.85em; }}
{labels}}}
"""


HISTORY = table_cards("history_table", COLUMNS, PROMPT_COLUMN, unlabelled=("Worker",))
# the extension's name alone on the first line, then Version, Enabled, Remote… labelled
EXTENSIONS = table_cards("extensions_table", EXTENSION_COLUMNS, 0)

PAGE_CSS = THEME_VARS + MESSAGES + LAYOUT + CARDS + HISTORY + EXTENSIONS
