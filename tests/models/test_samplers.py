"""A1111 sampler names → diffusers schedulers, built from real model scheduler configs."""

from __future__ import annotations

import inspect
import json
import warnings
from pathlib import Path

import diffusers
import numpy as np
import pytest
import torch
from diffusers.utils import is_scipy_available

from webui.errors import InvalidRequest
from webui.models import samplers as S

CONFIGS = Path(__file__).resolve().parents[2] / "webui" / "models" / "configs"  # the shipped templates
# diffusers' schedulers trip numpy-2 deprecation warnings by the thousand (KDPM2 alone: two per training step).
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:diffusers.schedulers"),
    pytest.mark.filterwarnings("ignore:__array_wrap__ must accept context:DeprecationWarning"),
]


def _config(family: str) -> dict:
    return json.loads((CONFIGS / family / "scheduler" / "scheduler_config.json").read_text())


SD15, SD21V, SDXL = _config("sd15"), _config("sd21v"), _config("sdxl")
USABLE = [s for s in S.SAMPLERS if s.name in S.sampler_names()]
with warnings.catch_warnings():  # the capability probes run here, at collection, outside pytestmark
    warnings.simplefilter("ignore", DeprecationWarning)
    COMBOS = [(s, label) for s in USABLE for label in S.schedule_types_for(s)]


def _spec(name: str) -> S.SamplerSpec:
    return next(s for s in S.SAMPLERS if s.name == name)


def _denoise(scheduler, stochastic: bool, *, steps: int = 6, noise_seed: int = 1) -> torch.Tensor:
    """A full step loop over a random latent with a stand-in 'model' that predicts seeded noise."""
    torch.manual_seed(0)
    scheduler.set_timesteps(steps)
    latent = torch.randn(1, 4, 8, 8) * scheduler.init_noise_sigma
    fake_model = torch.Generator("cpu").manual_seed(2)
    extra = {"generator": torch.Generator("cpu").manual_seed(noise_seed)} if stochastic else {}
    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(latent, t)
        prediction = torch.randn(model_input.shape, generator=fake_model)
        latent = scheduler.step(prediction, t, latent, **extra).prev_sample
    return latent


def _schedule(scheduler) -> list[float]:
    scheduler.set_timesteps(6)
    sigmas = getattr(scheduler, "sigmas", None)
    return torch.as_tensor(scheduler.timesteps).tolist() + ([] if sigmas is None else sigmas.tolist())


# --- building and running ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "label"), COMBOS, ids=[f"{s.name}-{lab}" for s, lab in COMBOS])
def test_every_sampler_and_schedule_builds_and_denoises(spec, label):
    scheduler = S.build_scheduler(SD15, spec, label)
    assert type(scheduler).__name__ == spec.class_name
    out = _denoise(scheduler, S.is_stochastic(spec))
    assert out.shape == (1, 4, 8, 8)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("spec", USABLE, ids=lambda s: s.name)
def test_stochastic_flag_is_honest(spec):
    build = lambda: S.build_scheduler(SD15, spec, "Automatic")  # noqa: E731
    if S.is_stochastic(spec):
        assert "generator" in inspect.signature(type(build()).step).parameters
        assert not torch.equal(_denoise(build(), True, noise_seed=1), _denoise(build(), True, noise_seed=7))
        assert torch.equal(_denoise(build(), True, noise_seed=1), _denoise(build(), True, noise_seed=1))
    else:  # draws no noise of its own, so a second run is identical
        assert torch.equal(_denoise(build(), False), _denoise(build(), False))


@pytest.mark.parametrize("label", ["Karras", "Exponential", "SGM Uniform", "Beta"])
def test_schedule_types_change_the_schedule(label):
    specs = [s for s in USABLE if label in S.schedule_types_for(s)]
    if label == "Beta" and not is_scipy_available():
        assert specs == []
        return
    assert specs
    for spec in specs:
        uniform = _schedule(S.build_scheduler(SD15, spec, "Uniform"))
        assert _schedule(S.build_scheduler(SD15, spec, label)) != uniform, spec.name


def test_automatic_uses_the_sampler_default():
    for spec in USABLE:
        auto = _schedule(S.build_scheduler(SD15, spec, "Automatic"))
        assert auto == _schedule(S.build_scheduler(SD15, spec, spec.default_schedule)), spec.name
    karras = S.build_scheduler(SD15, _spec("DPM++ 2M"), "Automatic")
    assert karras.config.use_karras_sigmas is True
    assert S.build_scheduler(SD15, _spec("DPM++ 2M SDE"), None).config.use_exponential_sigmas is True


def test_sampler_kwargs_are_applied():
    assert S.build_scheduler(SD15, _spec("DPM++ 2M SDE"), "Karras").config.algorithm_type == "sde-dpmsolver++"
    assert S.build_scheduler(SD15, _spec("DPM++ 2M"), "Karras").config.algorithm_type == "dpmsolver++"
    assert S.build_scheduler(SD15, _spec("PLMS"), "Uniform").config.skip_prk_steps is True
    assert S.build_scheduler(SD15, _spec("Euler"), "SGM Uniform").config.timestep_spacing == "trailing"


@pytest.mark.parametrize("spec", USABLE, ids=lambda s: s.name)
def test_model_config_is_kept(spec):
    scheduler = S.build_scheduler(SD21V, spec, "Automatic")
    assert scheduler.config.prediction_type == "v_prediction"
    assert scheduler.config.beta_schedule == "scaled_linear"
    assert scheduler.config.beta_start == 0.00085 and scheduler.config.beta_end == 0.012
    if "steps_offset" in S._params(spec):
        assert scheduler.config.steps_offset == 1
    assert torch.isfinite(_denoise(scheduler, S.is_stochastic(spec))).all()


def test_model_timestep_spacing_kept_and_model_sigma_choice_overridden():
    euler = _spec("Euler")
    assert S.build_scheduler(SDXL, euler, "Uniform").config.timestep_spacing == "leading"
    assert S.build_scheduler(SDXL, euler, "SGM Uniform").config.timestep_spacing == "trailing"
    karras_model = {**SDXL, "use_karras_sigmas": True}
    assert S.build_scheduler(karras_model, euler, "Uniform").config.use_karras_sigmas is False


def test_builds_are_fresh_copies():
    a, b = (S.build_scheduler(SD15, _spec("DPM2"), "Karras") for _ in range(2))
    assert a is not b
    a.set_timesteps(4)
    b.set_timesteps(9)
    assert len(a.timesteps) != len(b.timesteps)


def test_live_config_equals_raw_config():
    live = diffusers.PNDMScheduler.from_config(SD15).config  # what a loaded pipeline's scheduler carries
    assert live["timestep_spacing"] == "leading"  # filled in from PNDM's defaults, not the model's choice
    for name in ("Euler", "Euler a", "DPM++ 2M", "DDIM"):
        from_live = S.build_scheduler(live, _spec(name), "Automatic")
        assert _schedule(from_live) == _schedule(S.build_scheduler(SD15, _spec(name), "Automatic")), name


def test_numpy_trained_betas():
    betas = np.linspace(0.0001, 0.02, 1000)
    scheduler = S.build_scheduler({**SD15, "trained_betas": betas}, _spec("Euler"), "Karras")
    assert torch.allclose(scheduler.betas, torch.tensor(betas, dtype=scheduler.betas.dtype))


# --- what a scheduler cannot do ------------------------------------------------------------------------------------


def test_unsupported_combinations_raise():
    assert S.schedule_types_for(_spec("Euler a")) == ["Automatic", "Uniform", "SGM Uniform"]
    with pytest.raises(InvalidRequest, match="Euler a.*Karras"):
        S.build_scheduler(SD15, _spec("Euler a"), "Karras")
    with pytest.raises(InvalidRequest, match="DPM\\+\\+ SDE.*SGM Uniform"):
        S.resolve("DPM++ SDE", "SGM Uniform")
    # LCMScheduler accepts timestep_spacing but never reads it: not offered, not silently ignored.
    assert "SGM Uniform" not in S.schedule_types_for("LCM")
    with pytest.raises(InvalidRequest, match="LCM"):
        S.resolve("LCM", "sgm_uniform")


def test_kwargs_a_class_does_not_accept_are_refused():
    fake = S.SamplerSpec("Fake", (), "EulerAncestralDiscreteScheduler", {"use_karras_sigmas": True})
    with pytest.raises(InvalidRequest, match="use_karras_sigmas"):
        S.build_scheduler(SD15, fake, "Uniform")


@pytest.mark.skipif(is_scipy_available(), reason="scipy is installed")
def test_without_scipy_lms_and_beta_are_refused_clearly():
    assert "LMS" not in S.sampler_names()
    with pytest.raises(InvalidRequest, match="scipy"):
        S.resolve("LMS", None)
    with pytest.raises(InvalidRequest, match="scipy"):
        S.resolve("Euler", "Beta")
    assert "beta" not in [t["name"] for t in S.api_schedulers()]


@pytest.mark.skipif(not is_scipy_available(), reason="scipy is not installed")
def test_with_scipy_lms_and_beta_are_offered():
    assert "LMS" in S.sampler_names()
    assert S.resolve("k_lms", "beta") == (_spec("LMS"), "Beta")


# --- names ---------------------------------------------------------------------------------------------------------


def test_canonical_names_and_aliases_resolve():
    for spec in USABLE:
        for name in (spec.name, *spec.aliases, spec.name.upper(), f"  {spec.name.lower()} "):
            assert S.resolve(name, None)[0] is spec
    assert S.resolve("k_euler_ancestral", None)[0].name == "Euler a"
    assert S.resolve("euler A", None)[0].name == "Euler a"


def test_defaults():
    assert S.resolve(None, None) == (_spec("Euler a"), "Uniform")
    assert S.resolve("", "Automatic", default_sampler="DPM++ 2M") == (_spec("DPM++ 2M"), "Karras")
    expected = {
        "DPM++ 2M": "Karras",
        "DPM++ SDE": "Karras",
        "DPM++ 2M SDE": "Exponential",
        "DPM2": "Karras",
        "DPM2 a": "Karras",
        "Euler": "Uniform",
        "Euler a": "Uniform",
        "Heun": "Uniform",
        "LCM": "Uniform",
        "DDIM": "Uniform",
        "PLMS": "Uniform",
        "UniPC": "Uniform",
    }
    for name, label in expected.items():
        assert S.resolve(name, None)[1] == label, name


@pytest.mark.parametrize(
    ("name", "sampler", "label"),
    [
        ("DPM++ 2M Karras", "DPM++ 2M", "Karras"),
        ("DPM++ SDE Karras", "DPM++ SDE", "Karras"),
        ("DPM++ 2M SDE Exponential", "DPM++ 2M SDE", "Exponential"),
        ("DPM++ 2M SDE Karras", "DPM++ 2M SDE", "Karras"),
        ("dpm2 a karras", "DPM2 a", "Karras"),
        ("Euler Karras", "Euler", "Karras"),
        ("Euler a SGM Uniform", "Euler a", "SGM Uniform"),
        ("DDIM Uniform", "DDIM", "Uniform"),
        ("k_dpmpp_2m_ka", "DPM++ 2M", "Karras"),
    ],
)
def test_legacy_combined_names(name, sampler, label):
    assert S.resolve(name, None) == (_spec(sampler), label)
    assert S.resolve(name, "Automatic") == (_spec(sampler), label)


def test_explicit_scheduler_beats_legacy_suffix():
    assert S.resolve("DPM++ 2M Karras", "Exponential") == (_spec("DPM++ 2M"), "Exponential")
    assert S.resolve("DPM++ 2M Karras", "uniform") == (_spec("DPM++ 2M"), "Uniform")


def test_legacy_name_the_scheduler_cannot_do():
    with pytest.raises(InvalidRequest, match="Euler a.*Karras") as err:
        S.resolve("Euler a Karras", None)
    assert "Unknown sampler" not in err.value.message


@pytest.mark.parametrize("value", ["karras", "Karras", "KARRAS", " karras "])
def test_schedule_name_or_label_any_case(value):
    assert S.resolve("Euler", value)[1] == "Karras"


def test_sgm_uniform_spellings():
    for value in ("sgm_uniform", "SGM Uniform", "sgm uniform", "SGMUniform"):
        assert S.resolve("Euler", value)[1] == "SGM Uniform"


@pytest.mark.parametrize("name", ["DPM++ 2S a", "dpm++ 2s a", "k_dpmpp_2s_a", "DPM++ 2S a Karras"])
def test_dpmpp_2s_a_is_refused_not_substituted(name):
    with pytest.raises(InvalidRequest, match="no exact diffusers equivalent") as err:
        S.resolve(name, None)
    assert err.value.status == 422
    assert "DPM++ 2S a" not in S.sampler_names()


def test_unknown_sampler_lists_valid_names():
    with pytest.raises(InvalidRequest) as err:
        S.resolve("Turbo Magic", None)
    assert "Turbo Magic" in err.value.message
    assert "Euler a" in err.value.message and "DPM++ 2M" in err.value.message


@pytest.mark.parametrize(("value", "text"), [("Polyexponential", "diffusers cannot"), ("bogus", "Unknown schedule")])
def test_unknown_schedule_types(value, text):
    with pytest.raises(InvalidRequest, match=text) as err:
        S.resolve("Euler", value)
    assert "Karras" in err.value.message


# --- API shapes ----------------------------------------------------------------------------------------------------


def test_api_samplers_shape():
    items = S.api_samplers()
    json.dumps(items)
    assert [i["name"] for i in items] == S.sampler_names()
    for item in items:
        assert set(item) == {"name", "aliases", "options"}
        assert all(isinstance(v, str) for v in item["options"].values())
    by_name = {i["name"]: i for i in items}
    assert by_name["DPM++ 2M"] == {"name": "DPM++ 2M", "aliases": ["k_dpmpp_2m"], "options": {"scheduler": "karras"}}
    assert by_name["Euler a"]["aliases"] == ["k_euler_a", "k_euler_ancestral"]
    assert by_name["Euler a"]["options"] == {"uses_ensd": "True"}
    assert by_name["DPM++ 2M SDE"]["options"]["scheduler"] == "exponential"
    assert by_name["Euler"]["options"] == {}
    assert by_name["Heun"]["options"] == {"second_order": "True"}
    for spec in USABLE:
        assert (by_name[spec.name]["options"].get("uses_ensd") == "True") == S.is_stochastic(spec)


def test_api_schedulers_shape():
    items = S.api_schedulers()
    json.dumps(items)
    for item in items:
        assert set(item) == {"name", "label", "aliases", "default_rho", "need_inner_model"}
    by_name = {i["name"]: i for i in items}
    assert [i["name"] for i in items][:5] == ["automatic", "uniform", "karras", "exponential", "sgm_uniform"]
    assert [i["label"] for i in items][:5] == ["Automatic", "Uniform", "Karras", "Exponential", "SGM Uniform"]
    assert by_name["karras"]["default_rho"] == 7.0 and by_name["uniform"]["default_rho"] == -1
    assert by_name["sgm_uniform"]["aliases"] == ["SGMUniform"] and by_name["karras"]["aliases"] is None
    assert by_name["uniform"]["need_inner_model"] is True and by_name["karras"]["need_inner_model"] is False


def test_schedule_types_for_accepts_names():
    assert S.schedule_types_for("k_dpmpp_2m") == S.schedule_types_for(_spec("DPM++ 2M"))
    assert S.schedule_types_for("DPM++ 2M")[0] == "Automatic"
    assert "SGM Uniform" not in S.schedule_types_for("DPM++ SDE")  # DPMSolverSinglestep has no timestep_spacing
