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
