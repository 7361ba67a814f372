"""Network safety that is not tied to FastAPI: credential checks, allowed Host names, remote-image fetching that
refuses internal addresses (SSRF), image fields of API requests, and the Gradio share tunnel.

Nothing here is module-level state; every function takes what it needs (the Application, the options, the flags).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import http.client
import ipaddress
import logging
import secrets
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator
from urllib.parse import urljoin, urlsplit

from webui.errors import EaselError, Forbidden, InvalidRequest, PayloadTooLarge
from webui.outputs import decode_base64_image

if TYPE_CHECKING:
    from webui.app import Application

log = logging.getLogger("easel.security")

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
REMOTE_TIMEOUT = 15.0  # seconds for one remote image download
MAX_REDIRECTS = 3


# ---------------------------------------------------------------- credentials


def check_basic_auth(header: str | None, credentials: Iterable[tuple[str, str]]) -> str | None:
    """The user name when `header` ("Basic base64(user:password)") matches one of `credentials`, else None.

    Every credential is compared, user and password, with secrets.compare_digest, so the time taken does not
    depend on which part (or which entry) differed.
    """
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep:
        return None
    given_user, given_password = user.encode(), password.encode()
    found = None
    for u, p in credentials:
        ok_user = secrets.compare_digest(given_user, u.encode())
        ok_password = secrets.compare_digest(given_password, p.encode())
        if ok_user & ok_password and found is None:
            found = u
    return found


# ---------------------------------------------------------------- Host header (DNS rebinding)


def host_name(host_header: str) -> str:
    """ "example.com:7860" → "example.com"; "[::1]:7860" → "::1" (lower case)."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def is_loopback_bind(host: str) -> bool:
    """True when the server binds a loopback address (or "localhost"), i.e. only this machine can connect."""
    name = host_name(host)
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name.split("%")[0])
        return True
    except ValueError:
        return False


def machine_host_names() -> tuple[str, ...]:
    """This machine's own names (short, fully qualified, mDNS .local), lower case: what a LAN user types."""
    names = set()
    for name in (socket.gethostname(), socket.getfqdn()):
        name = name.strip().lower().rstrip(".")
        if name:
            names.add(name)
            names.add(name.split(".")[0] + ".local")
    return tuple(sorted(names))


def is_allowed_host(host_header: str | None, extra: Iterable[str] = (), *, ip_literals: bool = False) -> bool:
    """Loopback names (any port) always; plus `extra` names (--allowed-hosts, the share host). "*.example.com" in
    `extra` allows every subdomain of example.com (not example.com itself). `ip_literals`: any IP address as Host
    (a browser that typed an address has no DNS name to rebind)."""
    if not host_header:
        return False
    name = host_name(host_header)
    if name in LOOPBACK_NAMES or (ip_literals and is_ip_literal(name)):
        return True
    for allowed in extra:
        allowed = host_name(allowed) if allowed else ""
        if allowed.startswith("*.") and name.endswith(allowed[1:]) and len(name) > len(allowed) - 1:
            return True
        if allowed and name == allowed:
            return True
    return False


# ---------------------------------------------------------------- remote images (SSRF)


def is_public_address(address: str) -> bool:
    """True only for globally routable unicast addresses (no loopback/private/link-local/reserved/multicast)."""
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (
        ip.is_multicast or ip.is_reserved or ip.is_loopback or ip.is_link_local or ip.is_private or ip.is_unspecified
    )


def _resolve_public(host: str, port: int, what: str = "image", allow_private: bool = False) -> list[tuple]:
    """getaddrinfo for `host`, refusing the whole host if any of its addresses is internal (unless
    `allow_private`: --allow-private-downloads, for tests and LAN mirrors)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise InvalidRequest(f"cannot resolve {what} host {host!r}: {getattr(e, 'strerror', None) or e}") from None
    if not infos:
        raise InvalidRequest(f"cannot resolve {what} host {host!r}")
    for info in infos:
        if not allow_private and not is_public_address(str(info[4][0])):
            raise Forbidden(f"{what} URL host {host!r} resolves to a non-public address ({info[4][0]}); refused")
    return infos


class _PinnedConnection(http.client.HTTPConnection):
    """Connects only to an address checked at connect time, so DNS cannot change between check and use."""

    what = "image"  # named in error messages
    allow_private = False  # True only for --allow-private-downloads (model downloads from a LAN mirror or a test)

    def connect(self) -> None:
        err: OSError | None = None
        for family, kind, proto, _, addr in _resolve_public(self.host, self.port, self.what, self.allow_private):
            sock = socket.socket(family, kind, proto)
            sock.settimeout(self.timeout)
            try:
                sock.connect(addr)
            except OSError as e:
                sock.close()
                err = e
                continue
            self.sock = sock
            return
        raise err or OSError(f"cannot connect to {self.host}")


class _PinnedHTTPSConnection(_PinnedConnection):
    default_port = 443

    def connect(self) -> None:
        super().connect()
        self.sock = ssl.create_default_context().wrap_socket(self.sock, server_hostname=self.host)


@dataclass
class PublicResponse:
    """An open response from `open_public_url`: `url` is where it came from after redirects; `redirects` holds the
    headers of each redirect answer in order (a Hugging Face file URL names its file's SHA-256 in the first one)."""

    response: http.client.HTTPResponse
    url: str
    redirects: list[http.client.HTTPMessage] = field(default_factory=list)


@contextlib.contextmanager
def open_public_url(
    url: str,
    *,
    what: str = "image",
    headers: dict[str, str] | None = None,
    timeout: float = REMOTE_TIMEOUT,
    allow_private: bool = False,
) -> Iterator[PublicResponse]:
    """GET an http(s) URL that must resolve to public addresses only (checked at connect time, so DNS can't change
    in between); every redirect is checked again. Yields the final response unread, whatever its status, for the
    caller to stream; the connection is closed on exit. `allow_private` lifts the public-address rule (never the
    scheme rule). Errors: InvalidRequest (bad URL, unreachable, too many redirects), Forbidden (internal address)."""
    redirects: list[http.client.HTTPMessage] = []
    for _ in range(MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidRequest(f"{what} URL must be http:// or https:// with a host")
        cls = _PinnedHTTPSConnection if parts.scheme == "https" else _PinnedConnection
        conn = None
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            conn = cls(parts.hostname, port, timeout=timeout)
            conn.what, conn.allow_private = what, allow_private
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            conn.request("GET", path, headers={"User-Agent": "Easel", "Accept": "*/*", **(headers or {})})
            resp = conn.getresponse()
        except (OSError, ValueError, http.client.HTTPException) as e:
            if conn is not None:
                conn.close()
            raise InvalidRequest(f"cannot download {what}: {e}") from None
        try:
            if resp.status in (301, 302, 303, 307, 308) and resp.getheader("Location"):
                redirects.append(resp.headers)
                url = urljoin(url, resp.getheader("Location"))
                continue
            yield PublicResponse(resp, url, redirects)
            return
        finally:
            conn.close()
    raise InvalidRequest(f"{what} URL redirected more than {MAX_REDIRECTS} times")


def fetch_public_url(
    url: str, *, max_bytes: int, accept: str = "*/*", what: str = "image", timeout: float = REMOTE_TIMEOUT
) -> bytes:
    """GET an http(s) URL on public addresses only (open_public_url); at most `max_bytes` are read. Errors are
    InvalidRequest (bad URL, unreachable, HTTP error), Forbidden (internal address) and PayloadTooLarge, with `what`
    in their messages."""
    with open_public_url(url, what=what, headers={"Accept": accept}, timeout=timeout) as opened:
        resp = opened.response
        if resp.status != 200:
            raise InvalidRequest(f"{what} URL answered HTTP {resp.status}")
        try:
            data = resp.read(max_bytes + 1)
        except (OSError, ValueError, http.client.HTTPException) as e:
            raise InvalidRequest(f"cannot download {what}: {e}") from None
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"{what} at the URL is larger than {max_bytes} bytes")
    return data


def fetch_remote_image(url: str, *, max_bytes: int, timeout: float = REMOTE_TIMEOUT) -> bytes:
    """An image field's http(s) URL, on a public address only (fetch_public_url)."""
    return fetch_public_url(url, max_bytes=max_bytes, accept="image/*", what="image", timeout=timeout)


def _option(application: Application, key: str, default: Any) -> Any:
    try:
        return application.options.get(key)
    except KeyError:
        return default


def load_image_field(value: str, application: Application, *, field: str = "image"):
    """Decode one API image field: base64 or a data: URL, or (with the option `api_enable_requests`) an http(s)
    URL on a public address. Pixel limit: option `max_image_pixels` (413). Returns a loaded PIL image."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"{field} is empty")
    max_pixels = int(_option(application, "max_image_pixels", 4096 * 4096))
    text = value.strip()
    if text[:8].lower().startswith(("http://", "https://")):
        if not _option(application, "api_enable_requests", False):
            raise Forbidden(f"{field}: image URLs are disabled; enable the setting api_enable_requests to allow them")
        max_bytes = int(getattr(application.ns, "max_body_size", 64)) * 1024 * 1024
        data = fetch_remote_image(text, max_bytes=max_bytes)
        text = base64.b64encode(data).decode("ascii")
    try:
        return decode_base64_image(text, max_pixels=max_pixels)
    except EaselError as e:
        e.message = f"{field}: {e.message}"
        raise


# ---------------------------------------------------------------- --share


def open_share(
    application: Application, blocks, *, host: str, port: int, setup: Callable[..., str] | None = None
) -> str | None:
    """Open Gradio's share tunnel to the local server (gr.mount_gradio_app never does). Offline or on any failure,
    print a clear message and return None: the server keeps serving locally. Sets application.share_url."""
    try:
        if setup is None:
            from gradio import networking

            setup = networking.setup_tunnel
        local = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        url = setup(
            local_host=local,
            local_port=port,
            share_token=blocks.share_token,
            share_server_address=getattr(blocks, "share_server_address", None),
            share_server_tls_certificate=getattr(blocks, "share_server_tls_certificate", None),
        )
        if not url:
            raise RuntimeError("the tunnel returned no URL")
        url = "https://" + urlsplit(url).netloc if "://" in url else f"https://{url}"
    except Exception as e:  # the tunnel is optional: never take the local server down with it
        print(
            f"Could not open the --share tunnel ({type(e).__name__}: {e}). "
            f"Easel keeps serving locally on port {port} only.",
            flush=True,
        )
        application.share_url = None
        return None
    blocks.share_url = url
    application.share_url = url
    print(f"Public share URL: {url}", flush=True)
    return url


def start_share_when_ready(
    application: Application, blocks, *, host: str, port: int, timeout: float = 60.0
) -> threading.Thread:
    """Open the share tunnel from a thread once the local server accepts connections."""

    def run() -> None:
        local = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                socket.create_connection((local, port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        open_share(application, blocks, host=host, port=port)

    thread = threading.Thread(target=run, name="easel-share", daemon=True)
    thread.start()
    return thread
