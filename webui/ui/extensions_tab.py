"""The Extensions tab: Installed (enable, check for updates, update, uninstall, apply and restart), Available (from
the index JSON set in Settings) and Install from URL. The work is ExtensionManager's; this only shows it. When the
server is reachable from the network, the actions are disabled and the reason is shown."""

from __future__ import annotations

import html
import time
from typing import TYPE_CHECKING, Any

import gradio as gr

from webui.errors import InvalidRequest
from webui.extensions.manager import ExtensionInfo, manager_for
from webui.ui.common import error_html, error_message, ok_html

if TYPE_CHECKING:
    from webui.app import Application

HEADERS = ["Extension", "Version", "Enabled", "Remote", "Branch", "Commit", "Date", "Status", "Update"]
AVAILABLE_HEADERS = ["Extension", "Description", "URL", "Tags", "Installed"]
RESTART = "Restart Easel (stop it and run launch.py again) for the change to take effect."


def row(info: ExtensionInfo) -> list[str]:
    date = time.strftime("%Y-%m-%d %H:%M", time.localtime(info.commit_date)) if info.commit_date else ""
    status = f"error: {info.error}" if info.error else info.status
    return [
        info.name + (" (built-in)" if info.builtin else ""),
        info.version,
        "✓" if info.enabled else "",
        info.remote or "",
        info.branch or "",
        (info.commit_hash or "")[:8],
        date,
        status,
        info.update or "",
    ]


def note_html(text: str) -> str:
    return f'<div class="easel-note">{html.escape(text)}</div>'


class ExtensionsTab:
    def __init__(self, application: Application):
        self.app = application
        self.manager = manager_for(application)
        locked = self.manager.locked_reason
        self.lock_note = gr.HTML(note_html(locked) if locked else "", visible=bool(locked), elem_id="extensions_locked")
        can = not locked
        with gr.Tabs(elem_id="extensions_tabs"):
            with gr.Tab("Installed", elem_id="extensions_installed_tab"):
                with gr.Row():
                    self.apply = gr.Button(
                        "Apply and restart", variant="primary", interactive=can, elem_id="extensions_apply"
                    )
                    self.check = gr.Button("Check for updates", elem_id="extensions_check")
                names, enabled = self.enabled_choices()
                self.enabled = gr.CheckboxGroup(
                    names, value=enabled, label="Enabled", interactive=can, elem_id="extensions_enabled"
                )
                self.table = gr.Dataframe(
                    self.rows(), headers=HEADERS, interactive=False, wrap=True, elem_id="extensions_table"
                )
                with gr.Row():
                    self.selected = gr.Dropdown(
                        self.removable(), label="Extension", value=None, scale=3, elem_id="extensions_selected"
                    )
                    self.update = gr.Button("Update", interactive=can, scale=1, elem_id="extensions_update")
                    self.uninstall = gr.Button(
                        "Uninstall", variant="stop", interactive=can, scale=1, elem_id="extensions_uninstall"
                    )
                self.message = gr.HTML("", elem_id="extensions_message")
            with gr.Tab("Available", elem_id="extensions_available_tab"):
                with gr.Row():
                    self.index_url = gr.Textbox(
                        str(application.options.get("extensions_index_url") or ""),
                        label="Extension index (http(s) URL, or a JSON file in the data dir)",
                        scale=4,
                        interactive=can,
                        elem_id="extensions_index_url",
                    )
                    self.load = gr.Button("Load from:", scale=1, elem_id="extensions_load_index")
                self.available = gr.Dataframe(
                    [], headers=AVAILABLE_HEADERS, interactive=False, wrap=True, elem_id="extensions_available"
                )
                with gr.Row():
                    self.pick = gr.Dropdown(
                        [], label="Install this one", value=None, scale=3, elem_id="extensions_available_pick"
                    )
                    self.install_picked = gr.Button(
                        "Install", interactive=can, scale=1, elem_id="extensions_install_available"
                    )
                self.available_message = gr.HTML("", elem_id="extensions_available_message")
            with gr.Tab("Install from URL", elem_id="extensions_install_tab"):
                self.url = gr.Textbox(
                    label="URL for extension's git repository (or a local folder, or file://)",
                    elem_id="extensions_install_url",
                )
                with gr.Row():
                    self.branch = gr.Textbox(
                        label="Specific branch name",
                        placeholder="leave empty for default",
                        elem_id="extensions_install_branch",
                    )
                    self.folder = gr.Textbox(
                        label="Local directory name",
                        placeholder="leave empty for auto",
                        elem_id="extensions_install_dirname",
                    )
                self.install = gr.Button(
                    "Install", variant="primary", interactive=can, elem_id="extensions_install_button"
                )
                self.install_message = gr.HTML("", elem_id="extensions_install_result")
        self._wire()

    # --- views ---------------------------------------------------------------------------------------------------
    def rows(self) -> list[list[str]]:
        return [row(i) for i in self.manager.list()]

    def enabled_choices(self) -> tuple[list[str], list[str]]:
        infos = self.manager.list()
        return [i.name for i in infos], [i.name for i in infos if i.enabled]

    def removable(self) -> list[str]:
        return [i.name for i in self.manager.list() if not i.builtin]

    def refreshed(self) -> tuple[Any, Any, Any]:
        infos = self.manager.list()
        return (
            gr.update(value=[row(i) for i in infos]),
            gr.update(choices=[i.name for i in infos], value=[i.name for i in infos if i.enabled]),
            gr.update(choices=[i.name for i in infos if not i.builtin], value=None),
        )

    # --- events --------------------------------------------------------------------------------------------------
    def _wire(self) -> None:
        installed = [self.table, self.enabled, self.selected]
        self.apply.click(self.on_apply, inputs=[self.enabled], outputs=[self.message, *installed])
        self.check.click(self.on_check, inputs=None, outputs=[self.message, *installed])
        self.update.click(self.on_update, inputs=[self.selected], outputs=[self.message, *installed])
        self.uninstall.click(self.on_uninstall, inputs=[self.selected], outputs=[self.message, *installed])
        self.install.click(
            self.on_install, inputs=[self.url, self.branch, self.folder], outputs=[self.install_message, *installed]
        )
        self.load.click(
            self.on_load, inputs=[self.index_url], outputs=[self.available_message, self.available, self.pick]
        )
        self.install_picked.click(
            self.on_install_picked, inputs=[self.pick], outputs=[self.available_message, *installed]
        )

    def _do(self, action, *args: Any) -> tuple[Any, ...]:
        """Run a manager action; its message, then the refreshed Installed view."""
        try:
            message = ok_html(action(*args))
        except Exception as e:  # typed errors (403, 404, 409, git/pip failures) become a visible message
            message = error_html(error_message(e))
        return (message, *self.refreshed())

    def on_apply(self, enabled: list[str] | None):
        def apply(names):
            self.manager.apply_enabled(names or [])
            return f"Saved: {len(names or [])} extension(s) enabled. {RESTART}"

        return self._do(apply, enabled)

    def on_check(self):
        def check():
            results = self.manager.check_updates()
            if not results:
                return "No installed extension is a git checkout: nothing to check."
            return "; ".join(f"{name}: {status}" for name, status in results.items())

        return self._do(check)

    def on_update(self, name: str | None):
        def update(name):
            if not name:
                raise InvalidRequest("choose an extension first")
            info = self.manager.update(name)
            return f"{name}: {info.update}." + (f" {RESTART}" if info.update and "restart" in info.update else "")

        return self._do(update, name)

    def on_uninstall(self, name: str | None):
        def uninstall(name):
            if not name:
                raise InvalidRequest("choose an extension first")
            self.manager.uninstall(name)
            return f"Uninstalled {name}. {RESTART}"

        return self._do(uninstall, name)

    def on_install(self, url: str, branch: str, folder: str):
        def install(url, branch, folder):
            info = self.manager.install(url, branch=branch or None, name=folder or None)
            return f"Installed {info.name} {info.version} into {info.path}. {RESTART}"

        return self._do(install, url, branch, folder)

    def on_install_picked(self, url: str | None):
        if not url:
            return (error_html("Load the index and choose an extension first."), *self.refreshed())
        return self.on_install(url, "", "")

    def on_load(self, source: str):
        try:
            entries = self.manager.available((source or "").strip())
        except Exception as e:  # IndexUnavailable says plainly why
            return error_html(error_message(e)), gr.update(value=[]), gr.update(choices=[], value=None)
        rows = [
            [e["name"], e["description"], e["url"], ", ".join(map(str, e["tags"])), "✓" if e["installed"] else ""]
            for e in entries
        ]
        choices = [(e["name"], e["url"]) for e in entries if not e["installed"]]
        message = ok_html(f"{len(entries)} extension(s) in the index, {len(choices)} not installed.")
        return message, gr.update(value=rows), gr.update(choices=choices, value=None)


def build_extensions_tab(application: Application) -> ExtensionsTab:
    """Build the tab's content in the current Blocks context (inside `gr.Tab("Extensions", elem_id=...)`)."""
    return ExtensionsTab(application)
