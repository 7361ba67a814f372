"""Stream one URL into a `.part` file through the SSRF guard (webui.security.open_public_url), hashing as it goes.

- Resumable: a connection that drops mid-body is reopened with `Range: bytes=<have>-` (up to MAX_ATTEMPTS), and a
  `.part` kept from an earlier job of the same URL is continued the same way. A server that answers the Range with a
  whole 200 body is read again from the start; the hash always covers exactly the bytes in the file.
- Size-limited: the announced size (Content-Length, Content-Range, X-Linked-Size) is checked before the body is
  read, and the bytes are counted while they arrive (a server may announce nothing, or lie).
- The SHA-256 a Hugging Face file URL publishes (X-Linked-ETag on its redirect; its ETag) is reported, so the caller
  can verify against it when the user gave no hash.
"""

from __future__ import annotations

import hashlib
import http.client
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from webui.errors import DownloadFailed, InvalidRequest, PayloadTooLarge
from webui.security import PublicResponse, open_public_url

CHUNK = 1 << 20
MAX_ATTEMPTS = 5
TIMEOUT = 30.0  # seconds without a byte before the connection counts as dropped
HF_HOSTS = ("huggingface.co", "hf.co")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass
class DownloadStatus:
    """Live state of a download, read by the job view (`download` in /easel/v1/jobs/{id})."""

    url: str
    bytes_done: int = 0
    bytes_total: int | None = None
    resumed_from: int = 0  # bytes found in a .part from an earlier job (or attempt) and kept
    attempts: int = 0
    filename: str | None = None

    def to_dict(self) -> dict:
        return {
            "bytes_done": self.bytes_done,
            "bytes_total": self.bytes_total,
            "resumed_from": self.resumed_from,
            "attempts": self.attempts,
            "filename": self.filename,
        }


@dataclass
class Start:
    """What the first answer says, before any body byte is written: the name the server offers, the URL after
    redirects, the file's size and its published hash."""

    disposition: str | None
    final_url: str
    total: int | None
    published_sha256: str | None


@dataclass
class Fetched:
    sha256: str
    size: int
    published_sha256: str | None = None
    ranges: list[int] = field(default_factory=list)  # the offsets of every Range request made (tests, the log)


class _Dropped(Exception):
    """The connection ended before the body did: retried with a Range request."""


def is_hf(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host in HF_HOSTS or host.endswith(".huggingface.co")


def published_sha256(url: str, opened: PublicResponse) -> str | None:
    """The file's SHA-256 as Hugging Face publishes it: `X-Linked-ETag` (an LFS file's redirect), or the ETag of
    the hub's own answer for a hub URL. Anything that isn't 64 hex digits (a git blob's SHA-1, an md5) is ignored."""
    answers = [*opened.redirects, opened.response.headers]
    names = [("X-Linked-ETag", h) for h in answers]
    if is_hf(url):
        names.append(("ETag", answers[0]))
    for name, headers in names:
        value = (headers.get(name) or "").strip()
        value = value.removeprefix("W/").strip('"').lower()
        if _SHA256.fullmatch(value):
            return value
    return None


def _int(value: str | None) -> int | None:
    return int(value) if value and value.strip().isdigit() else None


def _announced(opened: PublicResponse, have: int) -> int | None:
    """The whole file's size: Content-Range's total on a 206, else Content-Length, else X-Linked-Size."""
    resp = opened.response
    if resp.status == 206:
        m = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", resp.getheader("Content-Range") or "")
        if m is None or int(m.group(1)) != have:
            return -1  # a range we didn't ask for
        return int(m.group(3)) if m.group(3) != "*" else None
    size = _int(resp.getheader("Content-Length"))
    if size is None:
        for headers in opened.redirects:
            size = size if size is not None else _int(headers.get("X-Linked-Size"))
    return size


def _hash_existing(part: Path, stop: Callable[[], None]) -> hashlib._Hash:
    h = hashlib.sha256()
    with open(part, "rb") as f:
        while chunk := f.read(CHUNK):
            stop()
            h.update(chunk)
    return h


def _read(resp: http.client.HTTPResponse, n: int) -> bytes:
    try:
        return resp.read1(n)  # what has arrived (up to n): progress moves as bytes come in
    except (http.client.HTTPException, OSError) as e:
        raise _Dropped(f"{type(e).__name__}: {e}") from None


def download(
    url: str,
    part: Path,
    *,
    max_bytes: int,
    allow_private: bool,
    status: DownloadStatus,
    on_start: Callable[[Start], None],
    stop: Callable[[], None],
    attempts: int = MAX_ATTEMPTS,
    timeout: float = TIMEOUT,
    pause: Callable[[float], None] = time.sleep,
) -> Fetched:
    """Download `url` into `part` (continuing what it already holds) and return its SHA-256 and size.

    `on_start` sees the first answer's names, size and published hash before any body byte is written (it may raise
    to refuse the file: the name is taken, the hashes can't match). `stop()` is called between chunks and raises to
    abort. A connection that drops is retried with a Range request; after `attempts` the error is DownloadFailed
    and the .part is left for the next install of the same URL to resume. Too big: PayloadTooLarge."""
    have = part.stat().st_size if part.exists() else 0
    h = _hash_existing(part, stop) if have else hashlib.sha256()
    status.resumed_from = status.bytes_done = have
    fetched = Fetched(sha256="", size=0)
    started, error = False, ""
    for attempt in range(1, attempts + 1):
        status.attempts = attempt
        stop()
        if attempt > 1:
            for _ in range(int(min(5.0, 0.25 * attempt) * 10)):  # a short back-off, interruptible
                stop()
                pause(0.1)
        headers = {"Range": f"bytes={have}-"} if have else {}
        if have:
            fetched.ranges.append(have)
        try:
            with open_public_url(
                url, what="model", headers=headers, timeout=timeout, allow_private=allow_private
            ) as opened:
                resp = opened.response
                total = _announced(opened, have) if resp.status in (200, 206) else None
                if resp.status == 416 or (resp.status == 206 and total == -1) or (resp.status == 200 and have):
                    # the server won't continue where we are: start again from byte 0
                    part.write_bytes(b"")
                    have, h = 0, hashlib.sha256()
                    status.resumed_from = status.bytes_done = 0
                    if resp.status != 200:
                        raise _Dropped(f"HTTP {resp.status} to a Range request")
                elif resp.status not in (200, 206):
                    raise InvalidRequest(f"model URL answered HTTP {resp.status}")
                if not started:
                    fetched.published_sha256 = published_sha256(url, opened)
                    on_start(
                        Start(
                            disposition=resp.getheader("Content-Disposition"),
                            final_url=opened.url,
                            total=total,
                            published_sha256=fetched.published_sha256,
                        )
                    )
                    started = True
                if total is not None and total > max_bytes:
                    raise PayloadTooLarge(
                        f"the model is {total} bytes; the limit is {max_bytes} bytes (setting model_download_max_mb)"
                    )
                status.bytes_total = total
                with open(part, "ab") as f:
                    while chunk := _read(resp, CHUNK):
                        stop()
                        if have + len(chunk) > max_bytes:
                            raise PayloadTooLarge(
                                f"the model is larger than the limit of {max_bytes} bytes "
                                "(setting model_download_max_mb)"
                            )
                        if total is not None and have + len(chunk) > total:
                            raise InvalidRequest(f"the server sent more than the {total} bytes it announced")
                        f.write(chunk)
                        h.update(chunk)
                        have += len(chunk)
                        status.bytes_done = have
                if total is not None and have < total:
                    raise _Dropped(f"the connection closed at byte {have} of {total}")
            fetched.sha256, fetched.size = h.hexdigest(), have
            return fetched
        except _Dropped as e:
            error = str(e)
        except InvalidRequest as e:
            if not started:  # a bad URL, refused address or unreachable host: no point retrying
                raise
            error = e.message  # a reconnect that failed after data arrived: retried
    raise DownloadFailed(
        f"the download failed after {attempts} attempts ({error}); the {have} bytes received are "
        "kept, and installing the same URL again resumes from there"
    )
