"""The checkpoint merger as a job on the shared queue: the request (the API's field names), every check before
anything is queued, and the job that writes the merged checkpoint into the checkpoint folder and lists it.

Output name: a merge never replaces an existing file (409). A1111 silently overwrites, which over an API is a way
to destroy a user's checkpoint (a "No interpolation" merge without a name is even named after its primary); here the
user picks another name instead. The file is written to a temp file and appears under its name only when complete.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from webui.errors import DiskFull, Interrupted, InvalidRequest, ModelNotFound
from webui.merge.names import discard_matcher, output_path
from webui.merge.plan import MergePlan, make_plan
from webui.merge.sources import TensorSource, VaeSource, opened
from webui.merge.stream_writer import build_header, layout, stream_safetensors

if TYPE_CHECKING:
    from webui.app import Application

JOB_KIND = "merge"
CONFIG_SOURCES = ("A, B or C", "B", "C", "Don't")  # A1111's "Copy config from" radio, by index
MAX_DISCARD_PATTERN = 256


class MergeRequest(BaseModel):
    """`POST /easel/v1/merge`. Checkpoints by title, name or hash as /sdapi/v1/sd-models lists them."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    primary: str = Field(..., min_length=1, max_length=500, description="A")
    secondary: Optional[str] = Field(None, max_length=500, description="B (weighted_sum, add_difference)")
    tertiary: Optional[str] = Field(None, max_length=500, description="C (add_difference)")
    method: Literal["weighted_sum", "add_difference", "no_interpolation"] = "weighted_sum"
    multiplier: float = Field(0.3, ge=0.0, le=1.0, description="M: A*(1-M)+B*M or A+(B-C)*M (A1111's 0..1)")
    name: str = Field("", max_length=100, description="output file name without extension; empty: A1111's name")
    save_as_half: bool = False
    bake_in_vae: Optional[str] = Field(None, max_length=500, description="a VAE from models/VAE; None/'None': none")
    discard_weights: str = Field("", max_length=MAX_DISCARD_PATTERN, description="regex of tensor names to drop")
    config_source: int = Field(0, ge=0, le=3, description="copy the .yaml beside: 0 A, B or C; 1 B; 2 C; 3 don't")


@dataclass
class MergeSpec:
    """A checked request: the files it reads and what it writes."""

    req: MergeRequest
    primary: Any  # CheckpointInfo
    secondary: Any | None
    tertiary: Any | None
    vae: Any | None  # VaeInfo
    ckpt_dir: Path

    @property
    def inputs(self) -> list[Any]:
        return [i for i in (self.primary, self.secondary, self.tertiary) if i is not None]


def coerce(value: Any) -> MergeRequest:
    if isinstance(value, MergeRequest):
        return value
    try:
        return MergeRequest.model_validate(value or {})
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "request"
        raise InvalidRequest(f"{where}: {first.get('msg', 'invalid')}", detail=str(e)) from None


METHODS_NEED = {"primary": "merging", "secondary": "merging", "tertiary": "Add difference"}


def _checkpoint(application: Application, query: str | None, role: str, needed: bool):
    if not needed:
        return None
    if not query or not query.strip() or query.strip() == "None":
        raise InvalidRequest(f"{METHODS_NEED[role]} requires a {role} model")
    try:
        info = application.catalog.find(query)
    except ModelNotFound:
        raise ModelNotFound(
            f"{role} checkpoint not found: {query!r} (checkpoints as /sdapi/v1/sd-models lists them)"
        ) from None
    if info.is_folder:
        raise InvalidRequest(
            f"{info.name} is a diffusers folder: the merger merges single-file checkpoints (.safetensors, .ckpt)"
        )
    return info


def _vae(application: Application, name: str | None):
    from webui.models.catalog import scan_vaes

    if name is None or name.strip() in ("", "None"):
        return None
    for v in scan_vaes(application.paths.vae_dir):
        if name in (v.name, v.model_name, v.path.stem):
            return v
    raise ModelNotFound(f"VAE not found: {name!r} (VAEs are listed from models/VAE, as /sdapi/v1/sd-vae shows)")


def check_request(application: Application, body: Any) -> MergeSpec:
    """Every check that needs no tensor data. Raises InvalidRequest / ModelNotFound / Conflict."""
    req = coerce(body)
    discard_matcher(req.discard_weights)  # a pattern that doesn't compile is refused before any file is opened
    spec = MergeSpec(
        req=req,
        primary=_checkpoint(application, req.primary, "primary", True),
        secondary=_checkpoint(application, req.secondary, "secondary", req.method != "no_interpolation"),
        tertiary=_checkpoint(application, req.tertiary, "tertiary", req.method == "add_difference"),
        vae=_vae(application, req.bake_in_vae),
        ckpt_dir=application.paths.ckpt_dir,
    )
    output_path(spec, None)  # a bad or taken name is refused now (the suffixes a plan may add are checked later)
    return spec


def _open_vae(spec: MergeSpec) -> TensorSource | None:
    return VaeSource(spec.vae.path) if spec.vae is not None else None


def plan_for(spec: MergeSpec, sources: list[TensorSource | None], vae: TensorSource | None) -> MergePlan:
    a, (b, c) = _primary(sources), (sources[1:] + [None, None])[:2]
    # a fresh matcher per plan: its time limit covers one pass over the tensor names
    return make_plan(
        spec.req.method,
        a,
        b,
        c,
        vae=vae,
        save_as_half=spec.req.save_as_half,
        discard=discard_matcher(spec.req.discard_weights),
    )


def preflight(spec: MergeSpec) -> None:
    """Families, shapes, the VAE's fit and the discard pattern, from the headers, when every input is a
    .safetensors file (a .ckpt would have to be unpickled whole: it is checked when the job runs)."""
    files = [i.path for i in spec.inputs] + ([spec.vae.path] if spec.vae else [])
    if any(p.suffix.lower() != ".safetensors" for p in files):
        return
    with opened(*[i.path for i in spec.inputs]) as sources:
        vae = _open_vae(spec)
        try:
            output_path(spec, plan_for(spec, sources, vae))
        finally:
            if vae is not None:
                vae.close()


def submit_merge(application: Application, body: Any):
    """Check, then queue a "merge" job; its value is {name, path, title, sha256} of the new checkpoint."""
    spec = check_request(application, body)
    preflight(spec)
    return application.jobs.submit(
        JOB_KIND, spec.req.model_dump(mode="json"), lambda job: run_merge(application, spec, job)
    )


def _check_space(folder: Path, nbytes: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < nbytes + (64 << 20):
        raise DiskFull(
            f"disk full: free space in {folder}",
            detail=f"the merged checkpoint needs {nbytes / 2**30:.2f} GiB, {free / 2**30:.2f} GiB free",
        )


def _given(sources: list[TensorSource | None]) -> list[TensorSource]:
    """The sources of spec.inputs, every one opened (opened() keeps a None only for a path not given)."""
    assert all(s is not None for s in sources)
    return [s for s in sources if s is not None]


def _primary(sources: list[TensorSource | None]) -> TensorSource:
    """Model A's source (check_request refuses a merge without it)."""
    return _given(sources[:1])[0]


def _easel_config(primary, source: TensorSource) -> str | None:
    """A's hyperparameters: its `easel.config` metadata, or the `.easel.json` beside a .ckpt."""
    if source.metadata.get("easel.config"):
        return source.metadata["easel.config"]
    sidecar = primary.path.with_suffix(".easel.json")
    return sidecar.read_text() if sidecar.is_file() and sidecar.stat().st_size < (1 << 20) else None


def copy_config(spec: MergeSpec, output: Path) -> Path | None:
    """A1111's "Copy config from": the first `<checkpoint>.yaml` beside A, B or C (or only B's, or C's) is copied
    beside the output as `<output>.yaml`."""
    from webui.fsutil import atomic_write_bytes

    candidates = {0: spec.inputs, 1: [spec.secondary], 2: [spec.tertiary], 3: []}[spec.req.config_source]
    for info in candidates:
        yaml = info.path.with_suffix(".yaml") if info is not None else None
        if yaml is not None and yaml.is_file():
            dest = output.with_suffix(".yaml")
            atomic_write_bytes(dest, yaml.read_bytes())
            return dest
    return None


def run_merge(application: Application, spec: MergeSpec, job) -> dict[str, Any]:
    from webui.merge.run import merge_metadata, write_all
    from webui.models.hashing import legacy_model_hash

    control, req = job.control, spec.req

    def stop() -> None:
        if control.interrupted:
            raise Interrupted("the merge was interrupted; nothing was saved")

    control.textinfo = "Reading the checkpoints"
    with opened(*[i.path for i in spec.inputs]) as sources:
        vae = _open_vae(spec)
        try:
            plan = plan_for(spec, sources, vae)
            output = output_path(spec, plan)
            specs = layout([s.spec for s in plan.steps])
            metadata = merge_metadata(
                plan,
                method=req.method,
                multiplier=req.multiplier,
                save_as_half=req.save_as_half,
                custom_name=req.name,
                config_source=req.config_source,
                bake_in_vae=req.bake_in_vae or "None",
                discard_weights=req.discard_weights,
                inputs=list(zip(spec.inputs, _given(sources))),
                legacy_hash=legacy_model_hash,
                easel_config=_easel_config(spec.primary, _primary(sources)),
            )
            spec.ckpt_dir.mkdir(parents=True, exist_ok=True)
            _check_space(spec.ckpt_dir, plan.total_bytes + len(build_header(specs, metadata)))
            control.start_batch(0, len(specs))
            control.textinfo = f"Merging into {output.name}"
            a, (b, c) = _primary(sources), (sources[1:] + [None, None])[:2]
            with stream_safetensors(output, specs, metadata) as writer:
                write_all(writer, plan, req.method, req.multiplier, a, b, c, vae, control.step, stop)
        finally:
            if vae is not None:
                vae.close()
    copy_config(spec, output)
    control.textinfo = "Hashing and listing the new checkpoint"
    application.models.refresh()  # listed in /sdapi/v1/sd-models and the UI's dropdowns without a restart
    info = _listed(application, output)
    return {
        "name": info.name if info else output.name,
        "path": str(output),
        "title": info.title if info else None,
        "sha256": info.sha256 if info else None,
    }


def _listed(application: Application, output: Path):
    for info in application.catalog.list():
        if info.path.resolve() == output.resolve():
            return info
    return None


def describe(job) -> str:
    """A one-line status of a merge job for the UI."""
    if job.status == "done" and isinstance(job.value, dict):
        return f"Checkpoint saved to {job.value['path']}"
    if job.error is not None:
        return f"Failed: {getattr(job.error, 'message', None) or job.error}"
    return job.status
