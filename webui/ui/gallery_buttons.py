"""The buttons under a gallery, as A1111's: 💾 Save (the selected image), 🗃️ Zip (all of them), 📂 Open folder (the
tab's output folder, only when the server is reachable from this machine alone: never when --listen/--share expose
it, since the folder would open on the server's screen), and Send to img2img / inpaint / extras. Save and Zip write
into outputs/save (webui/saved_images.py) and offer the file for download. The Send-to buttons are wired by
sendto.SendTo; this builds them and handles the rest."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from webui.errors import EaselError
from webui.flags import is_network_exposed
from webui.saved_images import save_images, zip_images

if TYPE_CHECKING:
    from webui.app import Application

SEND_LABELS = {"img2img": "🖼️ img2img", "inpaint": "🎨️ inpaint", "extras": "📐 extras"}


def gallery_paths(gallery) -> list[str]:
    """The file paths of a gallery value (Gradio gives (path, caption) pairs)."""
    out = []
    for item in gallery or []:
        path = item[0] if isinstance(item, (tuple, list)) else item
        if isinstance(path, (str, Path)):
            out.append(str(path))
    return out


def selected_index(results: Any, n: int) -> int:
    i = (results or {}).get("selected", 0) if isinstance(results, dict) else 0
    return i if isinstance(i, int) and 0 <= i < n else 0


class GalleryButtons:
    def __init__(self, application: Application, tabname: str, kind: str, targets: tuple[str, ...]):
        """`kind`: the output folder 📂 opens (txt2img, img2img, extras); `targets`: the Send-to buttons."""
        self.app, self.kind = application, kind
        t = tabname
        self.local = not is_network_exposed(application.ns)
        with gr.Row(elem_id=f"image_buttons_{t}", elem_classes=["easel-image-buttons"]):
            self.open = gr.Button(
                "📂",
                elem_id=f"{t}_open_folder",
                size="sm",
                min_width=40,
                scale=0,
                visible=self.local,
                elem_classes=["easel-tool"],
            )
            self.save = gr.Button("💾 Save", elem_id=f"save_{t}", size="sm", min_width=60)
            self.zip = gr.Button("🗃️ Zip", elem_id=f"save_zip_{t}", size="sm", min_width=60)
            self.send = {
                target: gr.Button(SEND_LABELS[target], size="sm", elem_id=f"{t}_send_to_{target}", min_width=60)
                for target in targets
            }
        self.download = gr.File(None, label="Saved", visible=False, interactive=False, elem_id=f"download_files_{t}")
        self.status = gr.HTML("", elem_id=f"{t}_save_status")

    def wire(self, gallery, results) -> None:
        outputs = [self.download, self.status]
        self.save.click(self.on_save, inputs=[gallery, results], outputs=outputs, api_visibility="private")
        self.zip.click(self.on_zip, inputs=[gallery], outputs=outputs, api_visibility="private")
        if self.local:
            self.open.click(self.on_open, inputs=None, outputs=[self.status], queue=False, api_visibility="private")

    @property
    def save_dir(self) -> Path:
        return Path(self.app.paths.outputs_dir) / "save"

    def on_save(self, gallery, results):
        paths = gallery_paths(gallery)
        if not paths:
            return gr.update(visible=False), _error("There is no image to save.")
        try:
            saved = save_images([paths[selected_index(results, len(paths))]], self.save_dir)
        except (EaselError, OSError) as e:
            return gr.update(visible=False), _error(getattr(e, "message", None) or str(e))
        return gr.update(value=[str(p) for p in saved], visible=True), _ok(f"Saved {saved[0].name} in {self.save_dir}")

    def on_zip(self, gallery):
        try:
            archive = zip_images(gallery_paths(gallery), self.save_dir)
        except (EaselError, OSError) as e:
            return gr.update(visible=False), _error(getattr(e, "message", None) or str(e))
        return gr.update(value=[str(archive)], visible=True), _ok(f"Saved {archive.name} in {self.save_dir}")

    def on_open(self):
        """Open the tab's output folder in the desktop's file manager (loopback servers only)."""
        if is_network_exposed(self.app.ns):
            return _error("Open folder is only for a server on this machine alone.")
        folder = self.app.outputs.base_folder(self.kind)
        folder.mkdir(parents=True, exist_ok=True)
        opener = shutil.which("xdg-open") or shutil.which("open")
        if opener is None:
            return _ok(f"The images are in {folder} (no file manager to open it here).")
        try:
            subprocess.Popen(
                [opener, str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
            )
        except OSError as e:
            return _error(f"Could not open {folder}: {e}")
        return _ok(f"Opened {folder}")


def _ok(message: str) -> str:
    from webui.ui.prompt_tools import ok_html

    return ok_html(message)


def _error(message: str) -> str:
    from webui.ui.prompt_tools import error_html

    return error_html(message)
