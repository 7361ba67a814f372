"""Install a model by URL as a job on the shared queue (the merger's pattern): the request, every check before
anything is queued, and the job that downloads, verifies, recognises, places and lists the file.

The job, in order: stream the URL into a hidden `.part` in the target folder (resumable, size-limited, through the
SSRF guard); verify its SHA-256 against the given hash or the one the source publishes (a mismatch deletes it);
read it safely (pickles only through the weights-only unpickler) and recognise it; choose the folder it belongs in;
optionally convert a pickle to safetensors; move it under its final name without ever replacing a file (409); list
it (checkpoints in /sdapi/v1/sd-models, LoRAs in /sdapi/v1/loras, embeddings) without a restart.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from webui.downloads import names
from webui.downloads.transfer import DownloadStatus, Start, download
from webui.errors import DiskFull, DownloadFailed, EaselError, Forbidden, Interrupted, InvalidRequest

if TYPE_CHECKING:
    from webui.app import Application

JOB_KIND = "install-model"
MAX_URL = 2048
Folder = Literal["Stable-diffusion", "Lora", "LyCORIS", "VAE", "ControlNet", "ESRGAN", "embeddings"]


class InstallRequest(BaseModel):
    """`POST /easel/v1/models/install`."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    url: str = Field(
        ...,
        min_length=8,
        max_length=MAX_URL,
        description="an http(s) URL of the model file (Hugging "
        "Face file URL, Civitai model-version download URL, any other)",
    )
    folder: Optional[Folder] = Field(None, description="where it goes; omitted or wrong: where the file's kind goes")
    sha256: Optional[str] = Field(
        None,
        pattern=r"^[0-9a-fA-F]{64}$",
        description="the file's expected SHA-256; omitted: the hash the source publishes (Hugging Face), if any",
    )
    filename: Optional[str] = Field(
        None,
        max_length=names.MAX_FILENAME,
        description="the file name; omitted: the server's Content-Disposition, else the URL's last path segment",
    )
    convert_to_safetensors: bool = Field(False, description="a pickle (.ckpt/.pt/.pth/.bin) is saved as .safetensors")


@dataclass
class InstallSpec:
    req: InstallRequest
    url: str
    folder: str | None  # as requested
    staging: Path  # the folder the .part lives in (the requested one, else the checkpoint folder)
    filename: str | None
    max_bytes: int
    allow_private: bool


def coerce(value: Any) -> InstallRequest:
    if isinstance(value, InstallRequest):
        return value
    try:
        return InstallRequest.model_validate(value or {})
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "request"
        raise InvalidRequest(f"{where}: {first.get('msg', 'invalid')}", detail=str(e)) from None


def locked_reason(application: Application) -> str | None:
    if application.extensions_locked:
        return (
            "Installing models by URL is turned off because this server is reachable from the network (--listen, "
            "--share or --server-name): a download writes files on this machine and fetches what a remote user "
            "names. Restart with --enable-insecure-extension-access to allow it."
        )
    return None


def check_url(url: str, *, allow_private: bool) -> str:
    """An http(s) URL with a host and no control characters; a literal internal address is refused here already
    (a name is resolved and checked when the job connects, and again on every redirect)."""
    url = url.strip()
    if any(ord(c) < 0x21 or c == "\x7f" for c in url):
        raise InvalidRequest("url contains spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise InvalidRequest(f"url is not a valid URL ({e})") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise InvalidRequest("url must be http:// or https:// with a host (no file:, ftp: or other schemes)")
    if port == 0:
        raise InvalidRequest("url has port 0")
    from webui.security import is_public_address

    with contextlib.suppress(ValueError):
        ipaddress.ip_address(parts.hostname.split("%")[0])
        if not allow_private and not is_public_address(parts.hostname):
            raise Forbidden(
                f"url points at a non-public address ({parts.hostname}); refused (start Easel with "
                "--allow-private-downloads for a LAN mirror)"
            )
    return url


def check_request(application: Application, body: Any) -> InstallSpec:
    """Every check that needs no network: the lock, fields, URL, folder and name (409 when taken). Raises typed."""
    reason = locked_reason(application)
    if reason:
        raise Forbidden(reason)
    req = coerce(body)
    allow_private = bool(getattr(application.ns, "allow_private_downloads", False))
    url = check_url(req.url, allow_private=allow_private)
    staging = names.folder_path(application, req.folder or "Stable-diffusion")
    filename = names.check_filename(req.filename) if req.filename is not None else None
    if filename and req.folder and names.taken(staging / filename):
        raise names.conflict(staging / filename, req.folder)
    max_bytes = int(application.options.get("model_download_max_mb")) * 1024 * 1024
    return InstallSpec(
        req=req,
        url=url,
        folder=req.folder,
        staging=staging,
        filename=filename,
        max_bytes=max_bytes,
        allow_private=allow_private,
    )


_SECRET_PARAM = re.compile(r"token|key|auth|sig|secret|password|credential", re.IGNORECASE)


def redacted(url: str) -> str:
    """The URL as the job's params and the history show it: a password and query values that look like credentials
    (Civitai's `?token=`, signed CDN URLs) replaced by `***`."""
    parts = urlsplit(url)
    query = urlencode(
        [(k, "***" if _SECRET_PARAM.search(k) else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    )
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username}:***@" + netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def submit_install(application: Application, body: Any):
    """Check, then queue an "install-model" job; its value is {name, path, model: {...}} of the installed file."""
    spec = check_request(application, body)
    params = {**spec.req.model_dump(mode="json"), "url": redacted(spec.url)}
    return application.jobs.submit(JOB_KIND, params, lambda job: run_install(application, spec, job))


def _check_space(folder: Path, nbytes: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < nbytes + (64 << 20):
        raise DiskFull(
            f"disk full: free space in {folder}",
            detail=f"the model needs {nbytes / 2**30:.2f} GiB, {free / 2**30:.2f} GiB free",
        )


def run_install(application: Application, spec: InstallSpec, job) -> dict[str, Any]:
    from webui.downloads.placing import finish

    control = job.control
    status = DownloadStatus(url=spec.url)
    job.download = status  # the job view shows bytes done / total
    state: dict[str, Any] = {"name": spec.filename, "expected": spec.req.sha256.lower() if spec.req.sha256 else None}

    def stop() -> None:
        if control.interrupted:
            raise Interrupted("the install was interrupted; nothing was kept")
        if status.bytes_total:
            control.sampling_steps = status.bytes_total
        control.step(status.bytes_done)

    def on_start(start: Start) -> None:
        name = state["name"] or names.choose_filename(
            [names.disposition_name(start.disposition), names.url_name(spec.url), names.url_name(start.final_url)]
        )
        if not name:
            raise InvalidRequest(
                "the server gives no usable file name (none ends in .safetensors, .ckpt, .pt, .pth "
                "or .bin): give one in filename"
            )
        if spec.folder and names.taken(spec.staging / name):
            raise names.conflict(spec.staging / name, spec.folder)
        published = start.published_sha256
        if state["expected"] and published and published != state["expected"]:
            raise InvalidRequest(
                f"SHA-256 mismatch: the source publishes {published}, the request expects "
                f"{state['expected']}; nothing was downloaded"
            )
        state["name"], state["expected"] = name, state["expected"] or published
        state["source"] = "request" if spec.req.sha256 else "published" if published else None
        status.filename = name
        if start.total is not None:
            _check_space(spec.staging, start.total - status.bytes_done)
        control.textinfo = f"Downloading {name}"

    spec.staging.mkdir(parents=True, exist_ok=True)
    part = names.part_path(spec.staging, spec.url)
    control.start_batch(0, 0)
    control.textinfo = "Connecting"
    keep_part = False
    try:
        fetched = download(
            spec.url,
            part,
            max_bytes=spec.max_bytes,
            allow_private=spec.allow_private,
            status=status,
            on_start=on_start,
            stop=stop,
        )
        control.sampling_steps = control.sampling_step = fetched.size
        if state["expected"] and fetched.sha256 != state["expected"]:
            raise InvalidRequest(
                f"SHA-256 mismatch: expected {state['expected']} ({state['source']}), the download "
                f"is {fetched.sha256}; the file was deleted"
            )
        return finish(
            application, spec, part, state["name"], fetched, verified=bool(state["expected"]), control=control
        )
    except DownloadFailed:
        keep_part = True  # the connection kept dropping: the next install of this URL resumes the .part
        raise
    finally:
        if not keep_part:
            with contextlib.suppress(FileNotFoundError):
                part.unlink()


def describe(job) -> str:
    if job.status == "done" and isinstance(job.value, dict):
        m = job.value.get("model") or {}
        return f"Installed {job.value['name']} in {m.get('folder')}"
    if job.error is not None:
        return f"Failed: {getattr(job.error, 'message', None) or job.error}"
    return job.status


__all__ = ["JOB_KIND", "EaselError", "InstallRequest", "check_request", "describe", "submit_install"]
