"""A1111 samplers and schedule types, mapped onto diffusers schedulers.

A *sampler* ("Euler a", "DPM++ 2M", …) names a diffusers scheduler class plus fixed kwargs. A *schedule type*
("Karras", "SGM Uniform", …) chooses how the noise levels are spaced. What each class can do is read from the
installed diffusers' constructor signatures at import time, because ``from_config`` silently drops kwargs a
class does not accept: asking Euler a for Karras sigmas would otherwise just give Uniform.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import inspect
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

import diffusers
import torch
from diffusers import SchedulerMixin
from diffusers.utils import is_scipy_available

from webui.errors import InvalidRequest

_SIGMA_FLAGS = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas")


@dataclass(frozen=True)
class ScheduleType:
    """One A1111 schedule type: its API name, its label (UI and infotext) and the diffusers kwargs it sets."""

    name: str
    label: str
    kwargs: Mapping[str, Any] = field(default_factory=dict, compare=False)
    default_rho: float = -1
    need_inner_model: bool = False
    aliases: tuple[str, ...] | None = None
    needs_scipy: bool = False


@dataclass(frozen=True)
class SamplerSpec:
    """One A1111 sampler. `default_schedule` is the label "Automatic" stands for."""

    name: str
    aliases: tuple[str, ...]
    class_name: str  # a scheduler class exported by `diffusers`
    kwargs: Mapping[str, Any] = field(default_factory=dict, compare=False)
    default_schedule: str = "Uniform"
    stochastic: bool = False  # draws fresh noise while stepping, so it needs a generator
    second_order: bool = False  # diffusers runs about two model evaluations per step

    @property
    def scheduler_class(self) -> type[SchedulerMixin]:
        return getattr(diffusers, self.class_name)


# A1111 1.10 order and metadata (modules/sd_schedulers.py), limited to what diffusers can do.
SCHEDULE_TYPES: tuple[ScheduleType, ...] = (
    ScheduleType("automatic", "Automatic"),
    ScheduleType("uniform", "Uniform", need_inner_model=True),
    ScheduleType("karras", "Karras", {"use_karras_sigmas": True}, default_rho=7.0),
    ScheduleType("exponential", "Exponential", {"use_exponential_sigmas": True}),
    ScheduleType(
        "sgm_uniform", "SGM Uniform", {"timestep_spacing": "trailing"}, need_inner_model=True, aliases=("SGMUniform",)
    ),
    ScheduleType("beta", "Beta", {"use_beta_sigmas": True}, need_inner_model=True, needs_scipy=True),
)

# A1111 1.10 order (k-diffusion, then timestep samplers, then LCM). DPM++ SDE uses the SDE variant, like A1111's.
# UniPC stays on bh2: A1111's default bh1 gives NaN at the final zero sigma in diffusers 0.42.
SAMPLERS: tuple[SamplerSpec, ...] = (
    SamplerSpec(
        "DPM++ 2M",
        ("k_dpmpp_2m",),
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2},
        "Karras",
    ),
    SamplerSpec(
        "DPM++ SDE",
        ("k_dpmpp_sde",),
        "DPMSolverSinglestepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "lower_order_final": True},
        "Karras",
        stochastic=True,
    ),
    SamplerSpec(
        "DPM++ 2M SDE",
        ("k_dpmpp_2m_sde",),
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "solver_order": 2},
        "Exponential",
        stochastic=True,
    ),
    SamplerSpec("Euler a", ("k_euler_a", "k_euler_ancestral"), "EulerAncestralDiscreteScheduler", stochastic=True),
    SamplerSpec("Euler", ("k_euler",), "EulerDiscreteScheduler"),
    SamplerSpec("LMS", ("k_lms",), "LMSDiscreteScheduler"),
    SamplerSpec("Heun", ("k_heun",), "HeunDiscreteScheduler", second_order=True),
    SamplerSpec("DPM2", ("k_dpm_2",), "KDPM2DiscreteScheduler", default_schedule="Karras", second_order=True),
    SamplerSpec(
        "DPM2 a",
        ("k_dpm_2_a",),
        "KDPM2AncestralDiscreteScheduler",
        default_schedule="Karras",
        stochastic=True,
        second_order=True,
    ),
    SamplerSpec("DDIM", ("ddim",), "DDIMScheduler"),
    SamplerSpec("PLMS", ("plms",), "PNDMScheduler", {"skip_prk_steps": True}),
    SamplerSpec("UniPC", ("unipc",), "UniPCMultistepScheduler", {"solver_type": "bh2"}),
    SamplerSpec("LCM", ("k_lcm",), "LCMScheduler", stochastic=True),
)

# A1111 names Easel deliberately does not offer, with the reason given to the user.
_NO_EQUIVALENT = "has no exact diffusers equivalent, and Easel does not substitute a different sampler"
_NOT_OFFERED: dict[str, str] = {
    "dpm++ 2s a": _NO_EQUIVALENT,
    "k_dpmpp_2s_a": _NO_EQUIVALENT,
    **{
        k: "is an A1111 sampler that Easel does not offer"
        for k in ("dpm++ 2m sde heun", "dpm++ 3m sde", "dpm fast", "dpm adaptive", "restart", "ddim cfg++")
    },
}
_A1111_ONLY_SCHEDULES: dict[str, str] = {  # A1111 name -> label; diffusers has no equivalent
    "polyexponential": "Polyexponential",
    "kl_optimal": "KL Optimal",
    "align_your_steps": "Align Your Steps",
    "simple": "Simple",
    "normal": "Normal",
    "ddim": "DDIM",
}


def _key(text: str) -> str:
    return " ".join(text.split()).casefold()


@functools.cache
def _init_params(cls: type) -> frozenset[str]:
    """Constructor parameter names; diffusers' placeholder for a missing backend takes only *args/**kwargs."""
    return frozenset(inspect.signature(cls.__init__).parameters)  # type: ignore[misc]


def _params(spec: SamplerSpec) -> frozenset[str]:
    return _init_params(spec.scheduler_class)  # type: ignore[arg-type]  # classes are hashable


for _spec in SAMPLERS:  # read the installed diffusers' signatures once, at import
    _params(_spec)
del _spec

_SAMPLER_BY_KEY: dict[str, SamplerSpec] = {_key(n): s for s in SAMPLERS for n in (s.name, *s.aliases)}
_SCHEDULE_BY_KEY: dict[str, ScheduleType] = {
    _key(n): t for t in SCHEDULE_TYPES for n in (t.name, t.label, *(t.aliases or ()))
}
_SCHEDULE_BY_LABEL: dict[str, ScheduleType] = {t.label: t for t in SCHEDULE_TYPES}
_SUFFIXES = sorted(
    [t.label for t in SCHEDULE_TYPES[1:]] + list(_A1111_ONLY_SCHEDULES.values()), key=len, reverse=True
)  # longest first: "SGM Uniform" before "Uniform"


def _missing_packages(spec: SamplerSpec) -> list[str]:
    """Packages a diffusers placeholder class needs (LMS needs scipy). Empty when the class is real."""
    if "num_train_timesteps" in _params(spec):
        return []
    backends = getattr(spec.scheduler_class, "_backends", ["an optional dependency"])
    return [b for b in backends if importlib.util.find_spec(b) is None] or list(backends)


def _supports(spec: SamplerSpec, schedule: ScheduleType) -> bool:
    if _missing_packages(spec):
        return False
    if schedule.label in ("Automatic", "Uniform"):
        return True
    if schedule.needs_scipy and not is_scipy_available():
        return False
    return all(k in _params(spec) for k in schedule.kwargs) and _takes_effect(spec, schedule)


def _takes_effect(spec: SamplerSpec, schedule: ScheduleType) -> bool:
    """Whether the option really changes the schedule: LCMScheduler accepts timestep_spacing and never reads it."""
    flags_off = {f: False for f in _SIGMA_FLAGS if f in _params(spec)}

    def probe(**extra: Any) -> tuple[float, ...] | None:
        return _probe(spec.class_name, tuple(sorted({**spec.kwargs, **flags_off, **extra}.items())))

    changed = probe(**schedule.kwargs)
    spacings = ("leading", "linspace") if "timestep_spacing" in schedule.kwargs else (None,)
    baselines = [probe(timestep_spacing=sp) if sp else probe() for sp in spacings]
    return changed is not None and any(b is not None and b != changed for b in baselines)


@functools.cache
def _probe(class_name: str, settings: tuple[tuple[str, Any], ...]) -> tuple[float, ...] | None:
    """Timesteps and sigmas of a small scheduler, or None when diffusers refuses the settings. It uses 100
    training steps because KDPM2's constructor loops in Python over every training step (about 1 s for 1000)."""
    try:
        built = getattr(diffusers, class_name)(num_train_timesteps=100, **dict(settings))
        built.set_timesteps(10)
    except Exception:
        return None
    sigmas = getattr(built, "sigmas", None)
    values = torch.as_tensor(built.timesteps).tolist() + ([] if sigmas is None else torch.as_tensor(sigmas).tolist())
    return tuple(values)


def _default_label(spec: SamplerSpec) -> str:
    return spec.default_schedule if _supports(spec, _SCHEDULE_BY_LABEL[spec.default_schedule]) else "Uniform"


def _available() -> list[SamplerSpec]:
    return [s for s in SAMPLERS if not _missing_packages(s)]


def sampler_names() -> list[str]:
    """Canonical names of the samplers usable with the installed packages."""
    return [s.name for s in _available()]


def is_stochastic(spec: SamplerSpec) -> bool:
    """Ancestral and SDE samplers (and LCM) add noise each step: pass them a torch.Generator."""
    return spec.stochastic


def schedule_types_for(sampler: SamplerSpec | str) -> list[str]:
    """Labels valid for this sampler, "Automatic" first. Empty when the sampler is not usable here."""
    spec = sampler if isinstance(sampler, SamplerSpec) else _find_sampler(sampler)[0]
    return [t.label for t in SCHEDULE_TYPES if _supports(spec, t)]


def _parse_schedule(value: str | None) -> ScheduleType:
    if value is None or not value.strip():
        return SCHEDULE_TYPES[0]
    found = _SCHEDULE_BY_KEY.get(_key(value))
    if found is not None:
        return found
    valid = ", ".join(t.label for t in SCHEDULE_TYPES)
    if _key(value) in {_key(x) for pair in _A1111_ONLY_SCHEDULES.items() for x in pair}:
        raise InvalidRequest(
            f"Schedule type {value!r} exists in A1111 but diffusers cannot do it. Valid schedule types: {valid}."
        )
    raise InvalidRequest(f"Unknown schedule type {value!r}. Valid schedule types: {valid}.")


def _split_suffix(key: str) -> tuple[str, str] | None:
    """'dpm++ 2m karras' -> ('dpm++ 2m', 'Karras'); 'k_dpmpp_2m_ka' -> ('k_dpmpp_2m', 'Karras')."""
    if key.endswith("_ka"):
        return key[:-3], "Karras"
    for label in _SUFFIXES:
        tail = " " + label.casefold()
        if key.endswith(tail) and len(key) > len(tail):
            return key[: -len(tail)], label
    return None


def _find_sampler(name: str) -> tuple[SamplerSpec, str | None]:
    """The sampler a name, alias or legacy combined name ("DPM++ 2M Karras") means, and its schedule suffix."""
    key = _key(name)
    if key in _SAMPLER_BY_KEY:
        return _SAMPLER_BY_KEY[key], None
    split = _split_suffix(key)
    if split is not None and split[0] in _SAMPLER_BY_KEY:
        return _SAMPLER_BY_KEY[split[0]], split[1]
    head = split[0] if split is not None else key
    reason = _NOT_OFFERED.get(key) or _NOT_OFFERED.get(head)
    if reason is not None:
        raise InvalidRequest(f"Sampler {name!r} {reason}. Valid samplers: {', '.join(sampler_names())}.")
    raise InvalidRequest(f"Unknown sampler {name!r}. Valid samplers: {', '.join(sampler_names())}.")


def _check(spec: SamplerSpec, schedule: ScheduleType) -> str:
    """The concrete label to use; raises InvalidRequest when this install cannot run the combination."""
    missing = _missing_packages(spec)
    if missing:
        raise InvalidRequest(
            f"Sampler {spec.name!r} needs the Python package(s) {', '.join(missing)}, which are not installed."
        )
    label = _default_label(spec) if schedule.label == "Automatic" else schedule.label
    if not _supports(spec, _SCHEDULE_BY_LABEL[label]):
        needs_scipy = _SCHEDULE_BY_LABEL[label].needs_scipy and not is_scipy_available()
        why = " (it needs scipy, which is not installed)" if needs_scipy else f" ({spec.class_name} cannot do it)"
        raise InvalidRequest(
            f"Sampler {spec.name!r} cannot use schedule type {label!r}{why}. "
            f"Valid schedule types for {spec.name}: {', '.join(schedule_types_for(spec))}."
        )
    return label


def resolve(
    sampler_name: str | None, scheduler: str | None, default_sampler: str = "Euler a"
) -> tuple[SamplerSpec, str]:
    """(sampler, concrete schedule label) for a request. A legacy suffix is used when `scheduler` is Automatic."""
    name = sampler_name if sampler_name and sampler_name.strip() else default_sampler
    spec, suffix = _find_sampler(name)
    schedule = _parse_schedule(scheduler)
    if schedule.label == "Automatic" and suffix is not None:
        schedule = _parse_schedule(suffix)
    return spec, _check(spec, schedule)


def scheduler_kwargs(sampler: SamplerSpec, schedule: str | None) -> dict[str, Any]:
    """The kwargs `build_scheduler` passes on top of the model's config. Validates the combination."""
    label = _check(sampler, _parse_schedule(schedule))
    params = _params(sampler)
    kwargs: dict[str, Any] = {f: False for f in _SIGMA_FLAGS if f in params}  # clear a model's own choice
    kwargs.update(sampler.kwargs)
    kwargs.update(_SCHEDULE_BY_LABEL[label].kwargs)
    unknown = sorted(k for k in kwargs if k not in params)
    if unknown:
        raise InvalidRequest(
            f"diffusers' {sampler.class_name} does not accept {', '.join(unknown)}, "
            f"so {sampler.name} with {label} cannot be built."
        )
    return kwargs


def build_scheduler(
    base_config: Mapping[str, Any], sampler: SamplerSpec, schedule: str | None = "Automatic"
) -> SchedulerMixin:
    """A fresh `sampler` scheduler built from the model's own scheduler config (betas, prediction type, spacing…).

    `base_config` may be the raw scheduler_config.json or a live `scheduler.config`. Keys diffusers filled in from
    the old class's defaults (`_use_default_values`, e.g. PNDM's "leading" spacing) are not the model's, so the new
    class's own defaults apply to them."""
    kwargs = scheduler_kwargs(sampler, schedule)
    filled = set(base_config.get("_use_default_values") or ())
    config = {k: v for k, v in dict(base_config).items() if k in _params(sampler) and k not in filled}
    key = json.dumps({**config, **kwargs}, sort_keys=True, default=_jsonable)
    # set_timesteps mutates a scheduler, so every caller gets its own copy of the cached one
    return copy.deepcopy(_prototype(sampler.class_name, key, tuple(sorted(kwargs))))


def _jsonable(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else str(value)  # numpy/torch trained_betas


@functools.lru_cache(maxsize=64)
def _prototype(class_name: str, config_json: str, checked: tuple[str, ...]) -> SchedulerMixin:
    """Built once per (class, config): some constructors are slow (KDPM2's takes about a second)."""
    config = json.loads(config_json)
    built: SchedulerMixin = getattr(diffusers, class_name).from_config(config)
    ignored = [k for k in checked if built.config.get(k) != config[k]]
    if ignored:  # from_config drops what a class does not take; scheduler_kwargs should have caught it already
        raise InvalidRequest(f"diffusers' {class_name} ignored {', '.join(ignored)}.")
    return built


def api_samplers() -> list[dict[str, Any]]:
    """GET /sdapi/v1/samplers: [{name, aliases, options}], options as A1111 sends them (string values)."""
    out = []
    for spec in _available():
        options: dict[str, str] = {}
        default = _default_label(spec)
        if default != "Uniform":
            options["scheduler"] = _SCHEDULE_BY_LABEL[default].name
        if spec.second_order:
            options["second_order"] = "True"
        if spec.stochastic:
            options["uses_ensd"] = "True"
        out.append({"name": spec.name, "aliases": list(spec.aliases), "options": options})
    return out


def api_schedulers() -> list[dict[str, Any]]:
    """GET /sdapi/v1/schedulers: the schedule types at least one usable sampler supports."""
    usable = [t for t in SCHEDULE_TYPES if any(_supports(s, t) for s in _available())]
    return [
        {
            "name": t.name,
            "label": t.label,
            "aliases": list(t.aliases) if t.aliases else None,
            "default_rho": t.default_rho,
            "need_inner_model": t.need_inner_model,
        }
        for t in usable
    ]
