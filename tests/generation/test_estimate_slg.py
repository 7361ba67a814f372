"""The time estimate counts SD 3/3.5 skip-layer guidance's extra transformer pass (webui/generation/estimate.py):
one per step inside the SLG window (diffusers' rule, slg.window_steps), on half the CFG batch."""

from __future__ import annotations

from webui.generation.estimate import SLG_PASS_COST, StepTimer, job_passes
from webui.generation.requests import Txt2ImgRequest
from webui.generation.slg import window_steps

BASE = dict(prompt="p", steps=20, width=64, height=64, cfg_scale=4)


def test_slg_window_steps_add_to_the_first_pass_only() -> None:
    off = job_passes(Txt2ImgRequest(**BASE), 64)
    on = job_passes(Txt2ImgRequest(**BASE, slg_scale=3, slg_start=0.01, slg_end=0.2), 64)
    assert window_steps(20, 0.01, 0.2) == 3  # steps 1, 2, 3: 20×0.01 < i < 20×0.2
    assert off == [(64 * 64, 20.0)] and on == [(64 * 64, 20 + 3 * SLG_PASS_COST)]
    whole = job_passes(Txt2ImgRequest(**BASE, slg_scale=3, slg_start=0.0, slg_end=1.0), 64)
    assert whole == [(64 * 64, 20 + 19 * SLG_PASS_COST)]  # step 0 never takes it (0 < i)
    # scale 0 is off whatever the window says; an empty window adds nothing
    assert job_passes(Txt2ImgRequest(**BASE, slg_scale=0, slg_start=0.0, slg_end=1.0), 64) == off
    assert job_passes(Txt2ImgRequest(**{**BASE, "steps": 3}, slg_scale=3, slg_start=0.01, slg_end=0.2), 64) == [
        (64 * 64, 3.0)
    ]
    # hires: the second pass runs on SD 3's img2img pipeline, which has no SLG
    hires = dict(enable_hr=True, hr_scale=2, hr_second_pass_steps=10, denoising_strength=0.5, n_iter=2)
    passes = job_passes(Txt2ImgRequest(**BASE, **hires, slg_scale=3, slg_start=0.01, slg_end=0.2), 64)
    assert passes == [(64 * 64, 21.5)] * 2 + [(128 * 128, 5.0)] * 2


def test_estimate_seconds_grow_with_the_slg_steps() -> None:
    timer = StepTimer()
    timer.record("sd35", [(64 * 64, 0.5)] * 3)
    off = timer.estimate("sd35", job_passes(Txt2ImgRequest(**BASE), 64))
    on = timer.estimate("sd35", job_passes(Txt2ImgRequest(**BASE, slg_scale=3, slg_start=0.01, slg_end=0.2), 64))
    assert off == 10.0 and on == 10.0 + 3 * SLG_PASS_COST * 0.5


def test_the_cost_guard_counts_the_slg_steps_too() -> None:
    from webui.generation.cost import request_cost

    off = request_cost(Txt2ImgRequest(**BASE), 64, grid=False)
    on = request_cost(Txt2ImgRequest(**BASE, slg_scale=3, slg_start=0.0, slg_end=1.0), 64, grid=False)
    assert off.passes[0].steps == 20 and on.passes[0].steps == 20 + 10  # 19 window steps at half a step, rounded up
    assert on.megapixel_steps > off.megapixel_steps
    assert request_cost(Txt2ImgRequest(**BASE, slg_scale=0, slg_end=1.0), 64, grid=False).passes == off.passes
