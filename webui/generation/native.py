"""The checkpoint's native size, read in one place: a width or height left unset (0/None, A1111's default) becomes
it (`requests.size_or_native`). The UI's size sliders, the cost guard, the time estimate and the plan all ask here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from webui.errors import EaselError

if TYPE_CHECKING:
    from webui.models.catalog import CheckpointInfo
    from webui.models.manager import LoadedModel

NO_MODEL = 512  # no checkpoint loaded yet: SD 1.x's size (the sliders' start, the estimate's guess)
UNKNOWN_NATIVE = 1024  # the largest native size of the supported families: a guard that must never underestimate


def native_size(model: LoadedModel | None, unknown: int = NO_MODEL) -> int:
    """The native size of `model` (its probe's: the UNet's sample size times the VAE's scale), `unknown` without one."""
    return int(model.native_size) if model is not None else unknown


def model_for_job(
    active: LoadedModel | None, wanted: str | None, find: Callable[[str], CheckpointInfo]
) -> LoadedModel | None:
    """The loaded model a job will run on when that is the active one: `wanted` (the job's sd_model_checkpoint, as
    the worker loads it) empty or naming the active checkpoint by any name the catalog knows; None when the job
    loads another checkpoint (its size is known only after loading) or nothing is loaded."""
    if active is None:
        return None
    if not wanted or wanted == active.info.title:
        return active
    try:
        return active if find(wanted).path == active.info.path else None
    except EaselError:  # unknown here: the job will report it
        return None
