"""Long jobs in the generation tabs, as in A1111 1.6+: Generate queues (a second click while a job runs is queued,
"Queued: position N" shows on the button row, "Cancel queued" takes the last one back), Interrupt and Skip show only
while this page's jobs run, a reloaded page (or a second tab of the same browser) finds its running and waiting jobs
and shows their progress, preview and results, "Generate forever" clicks Generate again whenever the queue empties,
and the keyboard works in every generation tab: Ctrl+Enter generates, Alt+Enter skips, Esc interrupts.

Whose jobs: each browser keeps a random id in localStorage (`gr.BrowserState`); with --gradio-auth the logged-in
user's name is used instead, so the user finds their jobs from any browser. The job queue keeps it on `Job.owner`.

One generator follows a tab's jobs (`follow_owned`), and there is one per tab and page: Generate only submits (no
queue wait, `queue=False`) and writes the job's id into the tab's `submitted` value, whose change starts the
follower; page load writes a reconnect token there, so a reloaded page runs the same follower. With
`trigger_mode="always_last"` a change while the follower runs starts one more run after it ends, so a job queued
at the moment the follower stops is never left unwatched, and two followers never write the same components.

Gradio 6 sends a generator's messages as diffs that the page's client applies in place to one object per event,
and the page may read a message after later diffs were applied to it; and Gradio's postprocessing pops `value` out
of an update dict it is given. So the follower's last message is complete (images, infotext, buttons, queue line)
and never re-sends an update dict: re-yielding the same dicts sent "delete value" for the gallery, and a page that
applied the messages late never showed the images (#19: the Chromium generate tests that timed out in the full
suite, then the img2img gallery that stayed empty)."""

from __future__ import annotations

import html
import time
import uuid
from typing import Any

import gradio as gr

from webui.ui.page_value import PageValue
from webui.ui.progress import follow

GENERATE, QUEUE_MORE = "Generate", "Generate (queue)"
UNCLAIMED = "unclaimed:"  # Job.owner of a job submitted before the page knew its browser id

SHORTCUTS_JS = r"""
() => {
  if (window.easelShortcuts) return;
  window.easelShortcuts = true;
  const shown = (el) => !!el && el.offsetParent !== null;
  const visible = (suffix) => [...document.querySelectorAll(`button[id$='${suffix}']`)].find(shown);
  document.addEventListener("keydown", (event) => {
    let button = null;
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && !event.altKey) button = visible("_generate");
    else if (event.key === "Enter" && event.altKey) button = visible("_skip");
    else if (event.key === "Escape") button = visible("_interrupt");
    if (!button) return;
    event.preventDefault();
    button.click();
  });
}
"""

# after the follower ends: Generate forever clicks Generate again (A1111 does it from the page too); it stops when
# the box is unticked or the last job made no image (failed, cancelled, interrupted early: no infotext shown; a
# warning shown with the images does not stop it)
FOREVER_JS = """
(forever) => {
  const tab = "%s";
  if (!forever) return [];
  const info = document.getElementById(`html_info_${tab}`);
  if (info && !info.querySelector(".easel-infotext")) return [];
  setTimeout(() => document.getElementById(`${tab}_generate`)?.click(), 200);
  return [];
}
"""


def owner_of(request: gr.Request | None, client: Any) -> str | None:
    """The owner name of a page's jobs: the logged-in user, else this browser's id."""
    user = getattr(request, "username", None) if request is not None else None
    if user:
        return f"user:{user}"
    return f"browser:{client}" if isinstance(client, str) and client else None


def new_client_id(client: Any) -> str:
    """This browser's id: kept once it exists, else a new random one."""
    return client if isinstance(client, str) and 8 <= len(client) <= 64 else uuid.uuid4().hex


def queue_html(positions: list[int]) -> str:
    if not positions:
        return ""
    text = f"Queued: position {positions[0]}" + (f" (+{len(positions) - 1} more)" if len(positions) > 1 else "")
    return f'<div class="easel-queue">{html.escape(text)}</div>'


class LiveJobs:
    """Mixed into GenerationTab: needs `app`, `tabname`, `job_kinds`, the results components (`gallery`, `info`,
    `progress`, `preview`, `results`, `job_id`), `generate`, `interrupt`, `skip`, `submit_values(*values)` and
    `finished(job)`."""

    job_kinds: tuple[str, ...] = ()

    def build_job_controls(self) -> None:
        """The row under Generate: Interrupt/Skip (hidden until a job runs), the queue line and its Cancel, and
        the Generate forever box."""
        t = self.tabname
        with gr.Row():
            self.interrupt = gr.Button("Interrupt", elem_id=f"{t}_interrupt", size="sm", visible=False)
            self.skip = gr.Button("Skip", elem_id=f"{t}_skip", size="sm", visible=False)
        with gr.Row(elem_id=f"{t}_queue_row", equal_height=True):
            self.queue_status = gr.HTML("", elem_id=f"{t}_queue_status", padding=False)
            self.cancel_queued = gr.Button(
                "Cancel queued", elem_id=f"{t}_cancel_queued", size="sm", visible=False, scale=0, min_width=110
            )
        self.submitted = PageValue(None)  # the job Generate last queued: the follower shows it even if it ended
        self.forever = gr.Checkbox(False, label="Generate forever", elem_id=f"{t}_generate_forever", container=False)

    # --- events --------------------------------------------------------------------------------------------------
    def follow_outputs(self) -> list:
        return [
            self.gallery,
            self.info,
            self.progress,
            self.preview,
            self.results,
            self.job_id,
            self.generate,
            self.interrupt,
            self.skip,
            self.queue_status,
            self.cancel_queued,
        ]

    def wire_jobs(self, client: gr.BrowserState) -> None:
        """Generate (with `generate_inputs`, set by wire_common), the follower, Cancel queued and Generate forever;
        `client` is the page's BrowserState."""
        self.generate.click(
            self.on_generate,
            inputs=[client, *self.generate_inputs],
            outputs=[self.info, self.queue_status, self.submitted],
            show_progress="hidden",
            queue=False,
        )  # submitting never waits in Gradio's queue: the job queue orders the work
        followed = self.submitted.change(
            self.follow_owned,
            inputs=[client, self.submitted],
            outputs=self.follow_outputs(),
            show_progress="hidden",
            trigger_mode="always_last",
            concurrency_limit=None,
        )
        followed.then(None, inputs=[self.forever], outputs=None, js=FOREVER_JS % self.tabname)
        self.cancel_queued.click(
            self.on_cancel_queued, inputs=[client, self.job_id], outputs=[self.queue_status], queue=False
        )

    def on_generate(self, request: gr.Request, client, *values):
        """Submit one job for this page (no waiting): "Queued: position N" at once when something runs."""
        from webui.ui.common import error_html, error_message

        try:
            job = self.submit_values(*values)
        except Exception as e:  # noqa: BLE001 - validation and option errors: visible, and the UI keeps working
            msg = error_message(e)
            gr.Warning(msg)
            return error_html(msg), gr.update(), gr.update()
        # a click before the page's browser id has loaded (a fresh browser, a slow load) has no owner yet: the
        # follower this return starts claims the job for the page once it knows the id, else a reloaded page
        # would not find it (#19: the reconnect test that saw only the page's later job). Marked so that no other
        # job (an API job has no owner) can be claimed by a page sending its id.
        job.owner = owner_of(request, client) or f"{UNCLAIMED}{job.id}"
        pos = self.app.jobs.position(job.id)
        return gr.update(), queue_html([pos] if pos else []), job.id

    def on_cancel_queued(self, request: gr.Request, client, followed: str | None = None):
        """Take back the last job this page queued that has not started (not the one shown: Interrupt is for it);
        the queue line as the follower shows it (without the job it follows)."""
        owner = owner_of(request, client)
        waiting = (
            [
                j
                for j in self.app.jobs.active(owner)
                if j.kind in self.job_kinds and j.id != followed and (self.app.jobs.position(j.id) or 0) > 0
            ]
            if owner
            else []
        )
        if waiting:
            self.app.jobs.cancel(waiting[-1].id)
        return queue_html(self._waiting_positions(owner, skip_id=followed))

    def _waiting_positions(self, owner: str | None, skip_id: str | None = None) -> list[int]:
        if not owner:
            return []
        out = []
        for j in self.app.jobs.active(owner):
            pos = self.app.jobs.position(j.id)
            if j.kind in self.job_kinds and j.id != skip_id and pos:
                out.append(pos)
        return out

    def follow_owned(self, request: gr.Request, client, submitted: str | None = None):
        """Generator: follow this page's jobs one after the other (progress, preview, then the images) until none
        is left; Interrupt/Skip show meanwhile. `submitted` is the job Generate just queued (shown even when it
        ended before this started, a short job), or a reload's token: then the running and waiting jobs. Jobs of
        this page queued after this started are shown too, ended or not."""
        owner = owner_of(request, client)
        first = self.app.jobs.get(submitted) if isinstance(submitted, str) and submitted else None
        if first is not None and owner and first.owner == f"{UNCLAIMED}{first.id}":
            first.owner = owner  # submitted by this page before its id had loaded: see on_generate
        since = min(first.created_at, time.time()) if first is not None else time.time()
        seen: set[str] = set()

        def pending() -> list:
            jobs = self.app.jobs.owned(owner, since) if owner else []
            jobs = [j for j in jobs if j.kind in self.job_kinds and j.id not in seen]
            if first is not None and first.id not in seen and all(j.id != first.id for j in jobs):
                jobs.insert(0, first)  # no owner known yet (the page's id not loaded): followed by its id
            return jobs

        jobs = pending()
        if not jobs:  # a generator that yields nothing makes Gradio 6 set every output to None (Generate lost its
            yield {self.generate: gr.update()}  # label at each page load): one message that changes nothing
            return
        while jobs:
            job = jobs[0]
            seen.add(job.id)
            yield {
                self.job_id: job.id,
                self.preview: gr.update(value=None, visible=False),
                self.generate: gr.update(value=QUEUE_MORE),
                self.interrupt: gr.update(visible=True),
                self.skip: gr.update(visible=True),
            }
            can_cancel = None
            for snap in follow(self.app.jobs, job):
                # the queue line every time (Generate and Cancel queued write it too: the follower's next message
                # sets it right), visibility only when it changes (each update re-renders the button in the page: a
                # click on it then waited for the page in a loaded Chromium)
                waiting = self._waiting_positions(owner, skip_id=job.id)
                out: dict[Any, Any] = {self.progress: snap.html, self.queue_status: queue_html(waiting)}
                if bool(waiting) != can_cancel:
                    can_cancel = bool(waiting)
                    out[self.cancel_queued] = gr.update(visible=can_cancel)
                if snap.preview is not None:
                    out[self.preview] = gr.update(value=snap.preview, visible=True)
                yield out
            shown = self.finished(job)
            jobs = pending()
            if jobs:
                yield shown
                continue
            # the last message is complete, and its images are sent once (Gradio rewrites an image's cache file each
            # time it is sent, and a page loading it meanwhile gets a cut file): see the module's docstring
            yield {
                **shown,
                self.generate: gr.update(value=GENERATE),
                self.interrupt: gr.update(visible=False),
                self.skip: gr.update(visible=False),
                self.queue_status: "",
                self.cancel_queued: gr.update(visible=False),
            }


def wire_live_jobs(demo: gr.Blocks, tabs: list) -> gr.BrowserState:
    """The page's browser id, the keyboard shortcuts, each tab's Generate and follower, and reconnect on load."""
    client = gr.BrowserState(None, storage_key="easel_client")
    gr.HTML("", js_on_load=f"({SHORTCUTS_JS.strip()})();", container=False, padding=False, elem_id="easel_shortcuts")
    for tab in tabs:
        tab.wire_jobs(client)

    # a reloaded page (or a second tab) finds this browser's running and queued jobs: each tab's follower runs
    def on_load(value):  # this browser's id, and a reconnect token for each tab's follower
        return new_client_id(value), *(f"reconnect:{uuid.uuid4().hex}" for _ in tabs)

    demo.load(on_load, inputs=[client], outputs=[client, *[tab.submitted for tab in tabs]], queue=False)
    return client
