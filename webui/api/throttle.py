"""Back-off for password guessing: per client address, free tries first, then an exponential lockout.

Used by HTTP Basic on the API and by the Gradio login form (webui/api/middleware.py). One instance per server,
owned by the FastAPI app that install_security builds, so tests and several servers never share counters.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

log = logging.getLogger("easel.security")


@dataclass
class _Record:
    failures: int = 0
    locked_until: float = 0.0


class AuthThrottle:
    """After `free_failures` wrong passwords from one address, each further failure locks that address out for
    `base_delay * 2**(n - free_failures - 1)` seconds, at most `max_delay`. A success clears the record. At most
    `max_clients` addresses are remembered (the oldest are forgotten), so memory stays bounded under a flood."""

    def __init__(
        self,
        *,
        free_failures: int = 5,
        base_delay: float = 1.0,
        max_delay: float = 300.0,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.free_failures = free_failures
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_clients = max_clients
        self.clock = clock
        self._records: OrderedDict[str, _Record] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> float:
        """Seconds this client must wait before its next password is even checked (0: go ahead)."""
        with self._lock:
            record = self._records.get(client)
            return max(0.0, record.locked_until - self.clock()) if record else 0.0

    def failed(self, client: str, what: str) -> None:
        with self._lock:
            record = self._records.pop(client, None) or _Record()
            self._records[client] = record  # most recent last
            while len(self._records) > self.max_clients:
                self._records.popitem(last=False)
            record.failures += 1
            over = record.failures - self.free_failures
            if over <= 0:
                return
            delay = min(self.max_delay, self.base_delay * 2 ** min(over - 1, 30))
            record.locked_until = self.clock() + delay
        log.warning("%s: %d failed logins from %s; locked out for %.0f s", what, record.failures, client, delay)

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._records.pop(client, None)


def client_address(scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "in-process"
