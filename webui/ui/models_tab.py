"""The Models page: install a model by URL (the same request as `POST /easel/v1/models/install`), with the download's
progress; and the note PNG Info shows when an infotext names models that aren't installed, with the same install
box. No install logic lives here: it builds the request, calls `submit_install` and follows the job."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any, Iterator

import gradio as gr

from webui.downloads import locked_reason, submit_install
from webui.downloads.missing import describe_missing, missing_models
from webui.downloads.names import FOLDERS, MAX_FILENAME
from webui.downloads.service import MAX_URL
from webui.errors import EaselError
from webui.infotext import parse_infotext
from webui.ui.common import error_html, error_message, ok_html

if TYPE_CHECKING:
    from webui.app import Application

POLL_SECONDS = 0.5
AUTO = "Automatic (from the file)"


def request_body(url, folder, filename, sha256, convert) -> dict[str, Any]:
    """The form → the API's body (empty optional fields left out)."""
    body: dict[str, Any] = {"url": (url or "").strip(), "convert_to_safetensors": bool(convert)}
    if folder and folder != AUTO:
        body["folder"] = folder
    if (filename or "").strip():
        body["filename"] = filename.strip()
    if (sha256 or "").strip():
        body["sha256"] = sha256.strip()
    return body


def _mb(n: int | None) -> str:
    return "?" if n is None else f"{n / 2**20:,.1f} MB"


def status_html(job) -> str:
    """Bytes done / total while it runs; then where the model went (and any note), or why not."""
    if job.done.is_set():
        if job.status == "done" and isinstance(job.value, dict):
            m = job.value.get("model") or {}
            what = " · ".join(x for x in (m.get("kind"), m.get("family")) if x)
            check = "SHA-256 verified" if m.get("verified") else "no hash to verify against"
            notes = "".join(f"<br>{html.escape(n)}" for n in m.get("notes") or ())
            return ok_html(f"Installed {job.value['name']} in {m.get('folder')} ({what}; {check})") + (
                f"<p>{notes}</p>" if notes else ""
            )
        reason = error_message(job.error) if job.error is not None else job.status
        return error_html(f"Install {job.status}: {reason}")
    status = getattr(job, "download", None)
    done, total = (status.bytes_done, status.bytes_total) if status is not None else (0, None)
    text = job.control.textinfo if job.status == "running" and job.control.textinfo else "Queued"
    if not total:
        return f'<div class="easel-progress"><span>{html.escape(text)} · {_mb(done)}</span></div>'
    frac = min(1.0, done / total)
    return (
        f'<div class="easel-progress"><progress value="{frac:.3f}" max="1" style="width:100%"></progress>'
        f"<span>{html.escape(text)} · {_mb(done)} / {_mb(total)} · {frac * 100:.0f}%</span></div>"
    )


class InstallBox:
    """URL, folder, file name, SHA-256, "convert to safetensors", Install, and the job's progress."""

    def __init__(self, application: Application, *, prefix: str = "models_install"):
        self.app = application
        reason = locked_reason(application)
        if reason:
            gr.HTML(error_html(reason), elem_id=f"{prefix}_locked")
        self.url = gr.Textbox(
            label="Model URL",
            max_length=MAX_URL,
            elem_id=f"{prefix}_url",
            placeholder="https://huggingface.co/<org>/<repo>/resolve/main/<file>.safetensors, a "
            "Civitai download URL, or any http(s) URL",
        )
        with gr.Row():
            self.folder = gr.Dropdown([AUTO, *FOLDERS], value=AUTO, label="Folder", elem_id=f"{prefix}_folder")
            self.filename = gr.Textbox(
                label="File name (optional)",
                max_length=MAX_FILENAME,
                elem_id=f"{prefix}_filename",
                placeholder="from the server or the URL",
            )
            self.sha256 = gr.Textbox(
                label="SHA-256 (optional)",
                max_length=64,
                elem_id=f"{prefix}_sha256",
                placeholder="Hugging Face's published hash is used when empty",
            )
        self.convert = gr.Checkbox(
            False, label="Convert .ckpt / .pt / .bin to .safetensors", elem_id=f"{prefix}_convert"
        )
        self.button = gr.Button("Install", variant="primary", elem_id=f"{prefix}_button", interactive=not reason)
        self.result = gr.HTML(elem_id=f"{prefix}_result")
        self.button.click(
            self.on_install,
            inputs=[self.url, self.folder, self.filename, self.sha256, self.convert],
            outputs=[self.result],
        )

    def on_install(self, url, folder, filename, sha256, convert) -> Iterator[str]:
        try:
            job = submit_install(self.app, request_body(url, folder, filename, sha256, convert))
        except EaselError as e:
            yield error_html(e.message)
            return
        while True:
            yield status_html(job)
            if job.done.wait(POLL_SECONDS):
                break
        yield status_html(job)


def build_models_tab(application: Application) -> InstallBox:
    """Inside the top-level `gr.Tab("Models")`."""
    gr.HTML(
        "<p>Paste a model's URL. The file is downloaded (resumable), checked against its SHA-256 when one is "
        "known, recognised and placed in its folder, and listed at once. Pickled files (.ckpt, .pt, .bin) are "
        "only ever read as plain tensors, never executed.</p>"
    )
    return InstallBox(application)


def missing_note(application: Application, text: str | None) -> tuple[str, Any]:
    """(note html, accordion update) for an infotext: which models it names that aren't installed."""
    if not text or not text.strip():
        return "", gr.update(visible=False)
    missing = missing_models(application, parse_infotext(text))
    if not missing:
        return "", gr.update(visible=False)
    return (
        error_html(f"Not installed: {describe_missing(missing)}. Install it from its URL below."),
        gr.update(visible=True, open=True),
    )


def attach_missing_models(application: Application, infotext: gr.Textbox) -> InstallBox:
    """PNG Info: a note under the parameters naming the missing models, and the install box; both follow
    `infotext` (a dropped image or pasted text)."""
    note = gr.HTML("", elem_id="pnginfo_missing_models")
    with gr.Accordion("Install a missing model", open=False, visible=False, elem_id="pnginfo_install") as box:
        install = InstallBox(application, prefix="pnginfo_install")
    infotext.change(lambda text: missing_note(application, text), inputs=[infotext], outputs=[note, box], queue=False)
    return install
