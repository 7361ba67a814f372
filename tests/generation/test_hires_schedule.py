"""A hires schedule type without a hires sampler applies on its own with the first pass's sampler, as in A1111
(it was ignored unless a hires sampler was chosen too)."""

from __future__ import annotations

from webui.generation import hires
from webui.generation.requests import Txt2ImgRequest

HIRES = dict(
    prompt="a red circle",
    steps=3,
    seed=7,
    sampler_name="Euler",
    scheduler="Automatic",
    enable_hr=True,
    hr_scale=1.5,
    hr_upscaler="Latent",
    hr_second_pass_steps=3,
    denoising_strength=0.6,
)


def _run(app, **kw):
    return app.jobs.wait(app.submit_txt2img(Txt2ImgRequest(**{**HIRES, **kw}), from_api=True), timeout=120)


def test_a_hires_schedule_type_alone_applies_with_the_first_pass_sampler(app, monkeypatch) -> None:
    built: list[tuple[str, str, bool]] = []
    real = hires.samplers.build_scheduler

    def spy(config, sampler, schedule="Automatic"):  # records what the hires pass builds (the real one is used)
        scheduler = real(config, sampler, schedule)
        built.append((sampler.name, schedule, bool(scheduler.config.get("use_karras_sigmas"))))
        return scheduler

    monkeypatch.setattr(hires.samplers, "build_scheduler", spy)
    plain = _run(app)
    assert "Hires schedule type" not in plain.infotexts[0] and built[-1][::2] == ("Euler", False)
    karras = _run(app, hr_scheduler="Karras")
    assert "Hires schedule type: Karras" in karras.infotexts[0] and "Hires sampler" not in karras.infotexts[0]
    assert built[-1] == ("Euler", "Karras", True)
    _run(app, hr_sampler_name="Euler", hr_scheduler="Karras")  # the same thing, said in full
    assert built[-1] == ("Euler", "Karras", True)
