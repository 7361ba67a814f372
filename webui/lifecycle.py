"""The server's life around the job queue: the jobs a previous run left waiting are queued again at start, and a
SIGTERM/SIGINT stops the server within 10 s even in the middle of a long generation.

Re-queueing: every queued job keeps its complete request in the history (`JobHistory.queued(request=…)`: the
request as the client sent it, input images included, and whether it came through the API). At the next start those
rows run again under their own ids, behind the initial model load, in their old order. A job whose request can't be
rebuilt (an older history, a kind that can't be replayed, a request that is no longer valid) is marked interrupted
with the reason. A re-run API job always saves its images: the client that asked is gone, so the history's result
(file paths) is the only way to get them.

Stopping: the first signal refuses new jobs (503), interrupts the running one (it ends "interrupted", keeping what
it finished) and leaves the waiting ones "queued" for the next start; uvicorn then closes the connections (an
in-flight /sdapi/v1/txt2img gets its partial answer), the worker is joined and the history closed. A watchdog ends
the process if anything still hangs after STOP_DEADLINE seconds, since service managers send SIGKILL at 10 s.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from webui.app import Application

log = logging.getLogger("easel.lifecycle")

STOP_DEADLINE = 7.0  # seconds from the signal to a forced exit (service managers kill at 10 s; a loaded
# machine needs the margin)
GRACEFUL_SECONDS = 3.0  # how long uvicorn waits for open connections once the running job was interrupted


def request_record(kind: str, body: dict[str, Any], *, from_api: bool, **extra: Any) -> dict[str, Any]:
    """What the history keeps to run a job again: its kind, the request body and how it was submitted."""
    return {"kind": kind, "from_api": from_api, "body": body, **extra}


def img2img_record(req, images: list, mask, from_api: bool) -> dict[str, Any]:
    """An img2img request with its decoded inputs as PNG (URLs and UI uploads alike), so a restart can run it."""
    from webui.outputs import encode_png_base64

    body = req.model_dump(mode="json")
    body.update(
        init_images=[encode_png_base64(im) for im in images], mask=encode_png_base64(mask) if mask is not None else None
    )
    return request_record("img2img", body, from_api=from_api)


def requeue_waiting(application: Application) -> int:
    """Queue again the jobs a previous run left waiting; returns how many were re-queued."""
    count = 0
    for row in application.history.waiting():
        try:
            _resubmit(application, row)
            count += 1
        except Exception as e:  # one bad row must not keep the server from starting
            reason = getattr(e, "message", None) or str(e) or type(e).__name__
            log.warning("job %s could not be re-queued: %s", row["id"], reason)
            application.history.finished(
                row["id"],
                "interrupted",
                None,
                f"server stopped before the job ran, and it could not be re-queued: {reason}",
                time.time(),
            )
    if count:
        log.info("re-queued %d job(s) left waiting by the previous run", count)
    return count


def _resubmit(application: Application, row: dict[str, Any]) -> None:
    from webui.errors import InvalidRequest
    from webui.generation.requests import Img2ImgRequest, Txt2ImgRequest

    record = row.get("request")
    if not record:
        raise InvalidRequest(f"no stored request for this {row['kind']} job")
    kind, body = record["kind"], dict(record.get("body") or {})
    from_api = bool(record.get("from_api"))
    if from_api and kind != "train-lora":
        body["save_images"] = True
    if kind == "txt2img":
        application.submit_txt2img(Txt2ImgRequest.model_validate(body), from_api=from_api, job_id=row["id"])
    elif kind == "img2img":
        application.submit_img2img(Img2ImgRequest.model_validate(body), from_api=from_api, job_id=row["id"])
    elif kind == "img2img-batch":
        application.submit_img2img_batch(
            Img2ImgRequest.model_validate(body),
            input_dir=record["input_dir"],
            output_dir=record["output_dir"],
            mask_dir=record.get("mask_dir"),
            scale=record.get("scale"),
            job_id=row["id"],
        )
    elif kind == "train-lora":
        from webui.training.jobs import start_training

        start_training(application, body, record.get("options"), job_id=row["id"])
    else:
        raise InvalidRequest(f"{kind} jobs are not re-queued after a restart")


def serve(application: Application, server_app, *, host: str, port: int, **config: Any) -> None:
    """uvicorn.run, with Easel's stop on SIGTERM/SIGINT (see the module's docstring)."""
    import uvicorn

    cfg = uvicorn.Config(server_app, host=host, port=port, timeout_graceful_shutdown=GRACEFUL_SECONDS, **config)
    try:
        EaselServer(cfg, application).run()
    except KeyboardInterrupt:  # uvicorn re-raises the captured SIGINT once it has stopped: a clean exit
        pass


def _server_class():
    import uvicorn

    class _EaselServer(uvicorn.Server):
        def __init__(self, config, application: Application):
            super().__init__(config)
            self.application = application
            self._signalled = False

        def handle_exit(self, sig, frame) -> None:
            if not self._signalled:
                self._signalled = True
                log.warning("signal %s: stopping (the running job is interrupted, waiting ones stay queued)", sig)
                watchdog = threading.Timer(STOP_DEADLINE, _force_exit)
                watchdog.daemon = True
                watchdog.start()
                self.application.jobs.stop(timeout=0)  # non-blocking: refuse new jobs, interrupt the running one
            super().handle_exit(sig, frame)

        async def shutdown(self, sockets=None) -> None:
            await super().shutdown(sockets)
            await asyncio.to_thread(self.application.stop)  # join the worker, close the history

    return _EaselServer


def _force_exit() -> None:
    log.error("still not stopped %.0f s after the signal: exiting now", STOP_DEADLINE)
    os._exit(1)


def EaselServer(config, application: Application):  # noqa: N802 (a factory: uvicorn is imported only when serving)
    return _server_class()(config, application)
