"""Typed errors. Each edge maps them: the API to a JSON body with a status, the UI to a visible message."""


class EaselError(Exception):
    """Base class. `status` is the HTTP status the API answers with."""

    status = 500

    def __init__(self, message: str, *, detail: str | None = None):
        super().__init__(message)
        self.message = message
        self.detail = detail or message


class InvalidRequest(EaselError):
    status = 422


class NotFound(EaselError):
    status = 404


class ModelNotFound(NotFound):
    pass


class ModelLoadError(EaselError):
    """A file exists but cannot be loaded (corrupt, unknown family, unsafe pickle)."""

    status = 400


class UnsafeCheckpoint(ModelLoadError):
    """A pickle that would run code when loaded. It is refused and never executed."""


class Interrupted(EaselError):
    status = 409


class Skipped(Exception):
    """Raised inside a denoise loop to abandon the current batch and move on."""


class Forbidden(EaselError):
    status = 403


class PayloadTooLarge(EaselError):
    status = 413


class Conflict(EaselError):
    """The request would replace something that exists (e.g. a merge's output name is taken)."""

    status = 409


class DownloadFailed(EaselError):
    """A model download's connection kept dropping: the partial file is kept, and the same install resumes it."""

    status = 502


class DiskFull(EaselError):
    """The data disk (or the output folder's) is full: the write was refused, nothing half-written was kept."""

    status = 507  # WebDAV's "Insufficient Storage": a JSON body says where to free space


class ShuttingDown(EaselError):
    """The server is stopping (SIGTERM/SIGINT) and takes no new jobs; queued ones run at the next start."""

    status = 503


class WorkerLost(EaselError):
    """The job's worker (a Ray actor) died, and the job was already retried as many times as allowed."""

    status = 503


def is_disk_full(exc: BaseException) -> bool:
    """An OSError ENOSPC/EDQUOT, or SQLite's "database or disk is full" (SQLITE_FULL)."""
    import errno
    import sqlite3

    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(exc, sqlite3.Error) and (
        "full" in str(exc).lower() or getattr(exc, "sqlite_errorname", "") == "SQLITE_FULL"
    )
