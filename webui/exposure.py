"""Who may reach the server: credentials (--gradio-auth, --api-auth and their files), the bind address, allowed
hosts and CORS origins, and the rule that a server reachable from the network needs a password.

Standard library only, like webui.flags: launch.py checks these before the venv exists.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from pathlib import Path

LOOPBACK_HOST = "127.0.0.1"


def parse_auth(s: str) -> list[tuple[str, str]]:
    """ "u:p,u2:p2" → [("u", "p"), ("u2", "p2")]. A password may contain ':' (only the first one splits).

    Errors name the entry by position, never by content, so a typo'd password is not echoed to the console.
    """
    creds: list[tuple[str, str]] = []
    entries = [e.strip() for e in s.strip().strip('"').replace("\n", ",").split(",")]
    for i, entry in enumerate(entries, 1):
        if not entry:
            continue  # tolerate a trailing comma or blank line
        user, sep, password = entry.partition(":")
        if not sep:
            raise ValueError(f"credential #{i} has no ':'; expected user:password[,user2:password2]")
        if not user.strip():
            raise ValueError(f"credential #{i} has an empty user name; expected user:password")
        if not password:
            raise ValueError(f"credential #{i} has an empty password; expected user:password")
        if any(u == user.strip() for u, _ in creds):
            raise ValueError(f"credential #{i}: user '{user.strip()}' is listed twice")
        creds.append((user.strip(), password))
    if not creds:
        raise ValueError("no credentials given; expected user:password[,user2:password2]")
    return creds


def read_auth_file(path: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """A1111's --gradio-auth-path format: every line holds u:p[,u2:p2]."""
    text = Path(path).expanduser().read_text(encoding="utf-8")
    return parse_auth(",".join(line.strip() for line in text.splitlines()))


def gradio_credentials(ns: argparse.Namespace) -> list[tuple[str, str]]:
    """Every UI credential from --gradio-auth and --gradio-auth-path (empty list: the UI has no auth)."""
    creds = parse_auth(ns.gradio_auth) if ns.gradio_auth else []
    if ns.gradio_auth_path:
        creds += read_auth_file(ns.gradio_auth_path)
    return creds


def api_credentials(ns: argparse.Namespace) -> list[tuple[str, str]]:
    """Every API credential from --api-auth and --api-auth-path (empty list: the API has no auth)."""
    creds = parse_auth(ns.api_auth) if ns.api_auth else []
    if getattr(ns, "api_auth_path", None):
        creds += read_auth_file(ns.api_auth_path)
    return creds


def allowed_hosts(ns: argparse.Namespace) -> list[str]:
    """--allowed-hosts as a list of lower-case names ("*.example.com" allows its subdomains)."""
    return [h.strip().lower().rstrip(".") for h in (getattr(ns, "allowed_hosts", None) or "").split(",") if h.strip()]


# ---------------------------------------------------------------- network


def _is_loopback(host: str) -> bool:
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # any other host name may resolve to a public address


def bind_host(ns: argparse.Namespace) -> str:
    """The address to bind: --server-name, else 0.0.0.0 with --listen, else loopback."""
    return ns.server_name or ("0.0.0.0" if ns.listen else LOOPBACK_HOST)


def _exposures(ns: argparse.Namespace) -> list[str]:
    reasons = []
    if ns.listen and not ns.server_name:
        reasons.append("--listen")
    if ns.server_name and not _is_loopback(ns.server_name):
        reasons.append(f"--server-name {ns.server_name}")
    if ns.share:
        reasons.append("--share")
    return reasons


def api_enabled(ns: argparse.Namespace) -> bool:
    """The HTTP API is served only with --api or --nowebui (A1111's rule: a UI-only server mounts no API route)."""
    return bool(ns.api or ns.nowebui)


def is_network_exposed(ns: argparse.Namespace) -> bool:
    return bool(_exposures(ns))


def _uncovered(ns: argparse.Namespace) -> list[str]:
    """The surfaces reachable from the network without credentials (UI and/or API)."""
    missing = []
    if not ns.nowebui and not (ns.gradio_auth or ns.gradio_auth_path):
        missing.append("the web UI is open: add --gradio-auth user:password (or --gradio-auth-path FILE)")
    if (ns.api or ns.nowebui) and not (ns.api_auth or getattr(ns, "api_auth_path", None)):
        missing.append("the API is open: add --api-auth user:password")
    return missing


def check_network_security(ns: argparse.Namespace) -> str | None:
    """An error message when the server would be reachable from the network without auth, else None."""
    exposed = _exposures(ns)
    missing = _uncovered(ns)
    if not exposed or not missing or ns.insecure_no_auth:
        return None
    lines = [f"Refusing to start: {' and '.join(exposed)} makes Easel reachable from the network without a password."]
    lines += [f"  - {m}" for m in missing]
    lines.append("Pass --insecure-no-auth instead only if you really want anyone on the network to use it.")
    return "\n".join(lines)


def insecurity_warning(ns: argparse.Namespace) -> str | None:
    """A loud warning for risky-but-allowed setups (--insecure-no-auth in use, extension installs when exposed)."""
    exposed = _exposures(ns)
    if not exposed:
        return None
    warnings = []
    if ns.insecure_no_auth and _uncovered(ns):
        warnings.append(
            f"{' and '.join(exposed)} with --insecure-no-auth: ANYONE who can reach this machine "
            "can use Easel without a password."
        )
    if ns.enable_insecure_extension_access:
        warnings.append("--enable-insecure-extension-access while exposed: remote users can install and run code.")
    bar = "!" * 78
    return "\n".join([bar, *("WARNING: " + w for w in warnings), bar]) if warnings else None


def cors_origins(ns: argparse.Namespace) -> list[str]:
    return [o.strip() for o in (ns.cors_allow_origins or "").split(",") if o.strip()]
