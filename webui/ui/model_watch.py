"""Model lists that follow the folders without a 🔄 (#19 item 7, "or a new file appears"): a `gr.Timer` asks the
Application's `model_watch` for its token every POLL_SECONDS; only when the token differs from the one this page
holds (a hidden box) does the box change, and its change event updates the page's lists as 🔄 does (the server has
already rescanned). An unchanged token sends nothing back, and between ticks no request stays open, so the page still
reaches network idle."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gradio as gr

from webui.ui.quicksettings import Quicksettings, active_title, checkpoint_titles

if TYPE_CHECKING:
    from webui.app import Application

POLL_SECONDS = 5.0


class ModelWatch:
    """Build inside the Blocks after the top bar; `wire(demo)` once every tab (and its lists) exists."""

    def __init__(self, application: Application, quick: Quicksettings):
        self.app, self.quick = application, quick
        self.token = gr.Textbox(
            application.model_watch.token(), visible="hidden", elem_id="easel_models_token", interactive=False
        )
        self.timer = gr.Timer(POLL_SECONDS)

    def wire(self, demo: gr.Blocks) -> None:
        quick = self.quick
        self.timer.tick(
            self.on_tick,
            inputs=[self.token],
            outputs=[self.token],
            queue=False,
            show_progress="hidden",
            api_visibility="private",
        )  # page plumbing, not an API endpoint
        changed = self.token.change(
            self.lists_now,
            inputs=None,
            outputs=[quick.checkpoint, *quick.pinned_lists(), *quick.lists.components],
            queue=False,
            show_progress="hidden",
            api_visibility="private",
        )
        quick.adopt_refresh_buttons(demo, changed)  # the extensions' lists (ControlNet models, X/Y/Z values) too

    def on_tick(self, seen: str | None) -> Any:
        token = self.app.model_watch.token()
        return token if token != seen else gr.update()

    def lists_now(self) -> list[Any]:
        """The top bar's checkpoint list, its pinned VAE list and every registered list, as the catalogs are now."""
        quick = self.quick
        vaes = [gr.update(choices=quick.choices("sd_vae"))] if quick.pinned_lists() else []
        return [
            gr.update(choices=checkpoint_titles(self.app), value=active_title(self.app)),
            *vaes,
            *quick.lists.updates(),
        ]
