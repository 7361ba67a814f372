"""The list of available extensions: an index JSON (A1111's {"extensions": [...]} or a plain list) read from a public
http(s) URL, or from a file inside the data dir on a server not reachable from the network."""

from __future__ import annotations

import json
import logging
import re
import urllib.request
from pathlib import Path
from typing import Any

from webui.errors import EaselError, InvalidRequest
from webui.extensions.checkout import folder_name_for

log = logging.getLogger("easel.extensions")


class IndexUnavailable(EaselError):
    status = 502  # the extension index set in Settings is unreachable or not JSON


class IndexNotSet(IndexUnavailable):
    status = 409  # nothing to fetch: a setting is missing, not an upstream failure


INDEX_MAX_BYTES = 16 * 1024 * 1024
INDEX_UNAVAILABLE = (
    "The extension index can't be reached or read. It must be an http(s) URL on a public address "
    "that serves the index JSON (or, on a server not reachable from the network, a JSON file inside "
    "the data dir). The server log says why."
)


def read_index(source: str, *, data_dir: Path | None = None) -> list[dict[str, Any]]:
    """The index at `source`: an http(s) URL on a public address only (the remote-image guard: no loopback, private
    or link-local address, also after redirects), or with `data_dir` a JSON file inside it. Every failure (refused
    address, closed port, DNS, HTTP status, a missing file, bad JSON) is the same IndexUnavailable, so the answer
    can't be used to probe internal ports or local files; the reason goes to the log."""
    if not source:
        raise IndexNotSet(
            "No extension index is set: put a URL or a JSON file in Settings → Extensions → Extension index"
        )
    from webui.security import fetch_public_url

    try:
        local = source.lower().startswith("file://") or not re.match(r"^[a-z][a-z0-9+.-]*://", source, re.I)
        if re.match(r"^https?://", source, re.IGNORECASE):
            raw = fetch_public_url(source, max_bytes=INDEX_MAX_BYTES, accept="application/json", what="extension index")
        elif local and data_dir is not None:
            raw = _read_local_index(source, data_dir)
        else:
            raise InvalidRequest("the extension index must be an http(s) URL")
        data = json.loads(raw.decode("utf-8"))
        entries = data.get("extensions") if isinstance(data, dict) else data
        if not isinstance(entries, list):
            raise ValueError("the index holds no list of extensions")
        return [
            {
                "name": str(e.get("name") or folder_name_for(str(e["url"]))),
                "url": str(e["url"]),
                "description": str(e.get("description", "")),
                "tags": list(e.get("tags") or []),
            }
            for e in entries
            if isinstance(e, dict) and e.get("url")
        ]
    except (EaselError, OSError, ValueError, TypeError, AttributeError) as e:
        log.warning("extension index %r: %s", source[:300], getattr(e, "message", None) or e)
        raise IndexUnavailable(INDEX_UNAVAILABLE) from None


def _read_local_index(source: str, data_dir: Path) -> bytes:
    path = Path(urllib.request.url2pathname(source[7:]) if source.lower().startswith("file://") else source)
    path = (path if path.is_absolute() else data_dir / path).resolve()
    if not path.is_relative_to(data_dir.resolve()):
        raise InvalidRequest(f"{path} is outside the data dir")
    with open(path, "rb") as f:
        raw = f.read(INDEX_MAX_BYTES + 1)
    if len(raw) > INDEX_MAX_BYTES:
        raise ValueError("the index file is too large")
    return raw
