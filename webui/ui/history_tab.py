"""The History tab: recent jobs from the SQLite history, with thumbnails, a prompt search and "Send to txt2img"."""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr
from PIL import Image

from webui.outputs import open_user_image
from webui.ui.common import infotext_html
from webui.ui.page_value import PageValue

if TYPE_CHECKING:
    from webui.app import Application

COLUMNS = ["Created", "Type", "Status", "Prompt / result", "Steps", "Sampler", "Size", "Seed", "Images", "Worker"]
# widths so that no header breaks mid-word ("Statu/s") and every column fits a 1280 px page (the prompt wraps)
# (under 640 px the rows are cards instead: page_css.HISTORY)
COLUMN_WIDTHS = ["190px", "85px", "70px", "285px", "60px", "90px", "65px", "105px", "70px", "85px"]
# the Workers table (--workers ray): what GET /easel/v1/workers lists
WORKER_COLUMNS = ["Worker", "State", "Host", "PID", "Device", "Loaded models", "Job", "Jobs done", "Heartbeat"]
# job kinds (webui/jobs.py) as the Type column names them; any other kind (an extension's) is shown as it is
JOB_TYPES = {
    "txt2img": "txt2img",
    "img2img": "img2img",
    "img2img-batch": "img2img batch",
    "extras": "extras",
    "train-lora": "train",
    "merge": "merge",
    "install-model": "install",
}
LIMIT = 50
THUMB = 192


def _info(job: dict[str, Any]) -> dict[str, Any]:
    return ((job.get("result") or {}).get("info")) or {}


def _images(job: dict[str, Any]) -> list[str]:
    return [p for p in ((job.get("result") or {}).get("images") or []) if isinstance(p, str)]


def job_type(job: dict[str, Any]) -> str:
    kind = str(job.get("kind") or "")
    return JOB_TYPES.get(kind, kind)


def final_loss(job: dict[str, Any]) -> float | None:
    losses = (job.get("result") or {}).get("losses") or []
    last = losses[-1] if losses else None
    return float(last) if isinstance(last, (int, float)) and not isinstance(last, bool) else None


def job_summary(job: dict[str, Any]) -> str:
    """The "Prompt / result" cell: the prompt of a generation; for a training job its LoRA name and final loss
    (A1111 users look for both after a run), for a merge or an install the file it made."""
    p, result = job.get("params") or {}, job.get("result") or {}
    kind = job.get("kind")
    if kind == "train-lora":
        text = f"LoRA {result.get('name') or p.get('name') or '?'}"
        loss = final_loss(job)
        if loss is not None:
            text += f" · final loss {loss:.4f}"
        if result.get("total_steps"):
            text += f" · step {result.get('step', 0)}/{result['total_steps']}"
        return text
    if kind in ("merge", "install-model"):
        name = result.get("name") or p.get("name") or p.get("url") or ""
        return f"{JOB_TYPES[kind]}: {name}" if name else JOB_TYPES[kind]
    return (job.get("prompt") or "")[:200]


def job_row(job: dict[str, Any]) -> list[Any]:
    p, info = job.get("params") or {}, _info(job)
    width, height = info.get("width") or p.get("width"), info.get("height") or p.get("height")
    generation = job.get("kind") in ("txt2img", "img2img", "img2img-batch")
    return [
        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job.get("created_at") or 0)),
        job_type(job),
        job.get("status", ""),
        job_summary(job),
        p.get("steps", ""),
        info.get("sampler_name") or p.get("sampler_name") or "",
        f"{width}x{height}" if width and height else ("native" if generation else ""),
        info.get("seed", p.get("seed", "")),
        len(_images(job)),
        (job.get("worker") or "") + (f" (retried {job['retries']}×)" if job.get("retries") else ""),
    ]


def first_image_path(job: dict[str, Any] | None) -> str | None:
    paths = _images(job) if job else []
    return paths[0] if paths else None


def thumbnail(path: str) -> Image.Image | None:
    """A small RGB copy of an output image, or None when the file is gone or unreadable."""
    try:
        with open_user_image(Path(path)) as im:
            im.thumbnail((THUMB, THUMB))
            return im.convert("RGB")
    except (OSError, ValueError):
        return None


def worker_rows(workers: list[dict[str, Any]], now: float | None = None) -> list[list[Any]]:
    """One row per Ray worker (GET /easel/v1/workers): the heartbeat as seconds ago."""
    now = time.time() if now is None else now
    rows = []
    for w in workers:
        beat = w.get("last_heartbeat")
        rows.append(
            [
                w.get("id"),
                w.get("state"),
                w.get("host") or w.get("node") or "",
                w.get("pid") or "",
                w.get("device") or "",
                ", ".join(w.get("loaded_models") or []),
                w.get("job") or "",
                w.get("jobs_done", 0),
                f"{max(0.0, now - beat):.0f} s ago" if beat else "",
            ]
        )
    return rows


def job_fields(job: dict[str, Any]) -> dict[str, Any]:
    """The request fields that reproduce a job without an infotext (failed, cancelled): its whole request (every
    field the tabs have, FLUX's Distilled CFG and SD 3.5's SLG included; sendto.tab_fields makes the tab's values
    of them), with the seed and size it really used."""
    p, info = dict(job.get("params") or {}), _info(job)
    p["sampler_name"] = info.get("sampler_name") or p.get("sampler_name") or p.get("sampler_index")
    p["scheduler"] = p.get("scheduler") or "Automatic"
    if not p["sampler_name"]:  # the request left it to the default: the tab keeps its sampler and schedule type
        del p["sampler_name"], p["scheduler"]
    p["seed"] = info.get("seed", p.get("seed"))
    p["width"] = info.get("width") or p.get("width")
    p["height"] = info.get("height") or p.get("height")
    p["_seed_extras"] = (p.get("subseed_strength") or 0) > 0 or (p.get("seed_resize_from_w") or 0) > 0
    if not isinstance(p.get("override_settings"), dict):
        p["override_settings"] = {}
    return p


def job_details(job: dict[str, Any] | None) -> str:
    if not job:
        return ""
    texts = (job.get("result") or {}).get("infotexts") or []
    head = f"<p><b>{html.escape(job_type(job))}</b> · {html.escape(job.get('status', ''))}"
    if job.get("kind") not in ("txt2img", "img2img", "img2img-batch"):
        head += f" · {html.escape(job_summary(job))}"
    if job.get("error"):
        head += f' · <span class="easel-error">{html.escape(str(job["error"]))}</span>'
    if job.get("worker"):
        head += f" · worker {html.escape(str(job['worker']))}"
    head += "</p>"
    if job.get("retry_log"):  # its worker died: re-queued, and why
        items = "".join(f"<li>{html.escape(str(r))}</li>" for r in job["retry_log"])
        head += f"<p>Retried {len(job['retry_log'])}×:</p><ul>{items}</ul>"
    body = infotext_html(texts[0]) if texts else infotext_html(job.get("prompt") or "")
    files = "".join(f"<li>{html.escape(p)}</li>" for p in _images(job))
    return head + body + (f"<ul>{files}</ul>" if files else "")


class HistoryTab:
    def __init__(self, application: Application, txt2img, tabs: gr.Tabs, tab: gr.Tab):
        self.app = application
        with gr.Row():
            self.search = gr.Textbox(
                label="Search prompts",
                placeholder="Search prompts, then press Enter",
                elem_id="history_search",
                scale=6,
            )
            self.refresh = gr.Button("🔄 Refresh", elem_id="history_refresh", scale=0, min_width=120)
        self.gallery = gr.Gallery(
            label="Recent images",
            columns=8,
            height=240,
            allow_preview=False,
            fit_columns=False,
            interactive=False,
            elem_id="history_gallery",
        )
        self.table = gr.Dataframe(
            headers=COLUMNS,
            value=[],
            interactive=False,
            wrap=True,
            elem_id="history_table",
            label="Recent jobs",
            column_widths=COLUMN_WIDTHS,
        )
        pool = application.workers  # --workers ray: the workers, next to the jobs they ran
        with gr.Accordion("Workers", open=True, visible=pool is not None, elem_id="history_workers_box"):
            self.workers = gr.Dataframe(
                headers=WORKER_COLUMNS, value=[], interactive=False, wrap=True, elem_id="history_workers"
            )
        with gr.Row():
            self.details = gr.HTML("", elem_id="history_details")
            self.send = gr.Button("Send to txt2img", elem_id="history_send_to_txt2img", scale=0, min_width=160)
            self.send_img2img = gr.Button(
                "Send to img2img", elem_id="history_send_to_img2img", scale=0, min_width=160
            )  # both wired by SendTo, which knows the tabs' scripts
        self.ids = PageValue([])  # job id per table row
        self.gallery_ids = PageValue([])  # job id per gallery item
        self.selected = PageValue(None)

        listing = [self.gallery, self.table, self.ids, self.gallery_ids, self.selected, self.details, self.workers]
        for event in (self.refresh.click, self.search.submit, tab.select):
            event(self.load, inputs=[self.search], outputs=listing)
        self.table.select(self.on_table_select, inputs=[self.ids], outputs=[self.selected, self.details])
        self.gallery.select(self.on_gallery_select, inputs=[self.gallery_ids], outputs=[self.selected, self.details])
        # self.send (→ txt2img) is wired by SendTo too: from the job's infotext it restores the scripts' controls

    def load(self, search: str | None):
        jobs = self.app.history.list(search=(search or "").strip() or None, limit=LIMIT)
        thumbs, gallery_ids = [], []
        for job in jobs:
            for path in _images(job)[:1]:
                im = thumbnail(path)
                if im is not None:
                    thumbs.append((im, (job.get("prompt") or "")[:60]))
                    gallery_ids.append(job["id"])
        rows = [job_row(j) for j in jobs]
        pool = self.app.workers
        workers = worker_rows(pool.list()) if pool is not None else []
        return thumbs, rows, [j["id"] for j in jobs], gallery_ids, None, "", workers

    def _select(self, job_id: str | None):
        job = self.app.history.get(job_id) if job_id else None
        return (job_id if job else None), job_details(job)

    def on_table_select(self, ids: list[str], evt: gr.SelectData):
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        return self._select(ids[row] if isinstance(row, int) and 0 <= row < len(ids) else None)

    def on_gallery_select(self, ids: list[str], evt: gr.SelectData):
        i = evt.index
        return self._select(ids[i] if isinstance(i, int) and 0 <= i < len(ids) else None)
