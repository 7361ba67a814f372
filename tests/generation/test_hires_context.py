"""The hires pass reads one context (GenerationContext.hires + hires.FirstPass), and A1111's "Use same …" labels
are resolved once, when the request is validated: the hires code never sees a UI label."""

from __future__ import annotations

import numpy as np
import pytest

from webui.generation.requests import SAME_CHECKPOINT, SAME_SAMPLER, SAME_SCHEDULER, Txt2ImgRequest

HIRES = dict(
    prompt="a red circle",
    steps=2,
    seed=7,
    enable_hr=True,
    hr_scale=1.5,
    hr_upscaler="Latent",
    hr_second_pass_steps=1,
    denoising_strength=0.5,
)


def test_use_same_labels_and_empty_names_mean_the_first_pass() -> None:
    req = Txt2ImgRequest(
        prompt="x", hr_sampler_name=SAME_SAMPLER, hr_scheduler=SAME_SCHEDULER, hr_checkpoint_name=SAME_CHECKPOINT
    )
    assert (req.hr_sampler_name, req.hr_scheduler, req.hr_checkpoint_name) == (None, None, None)
    blank = Txt2ImgRequest(prompt="x", hr_sampler_name=" ", hr_scheduler="", hr_checkpoint_name="")
    assert (blank.hr_sampler_name, blank.hr_scheduler, blank.hr_checkpoint_name) == (None, None, None)
    own = Txt2ImgRequest(prompt="x", hr_sampler_name="Euler", hr_scheduler="Karras", hr_checkpoint_name="b.ckpt")
    assert (own.hr_sampler_name, own.hr_scheduler, own.hr_checkpoint_name) == ("Euler", "Karras", "b.ckpt")


def _run(app, **kw):
    return app.jobs.wait(app.submit_txt2img(Txt2ImgRequest(**{**HIRES, **kw}), from_api=True), timeout=120)


def test_a1111_same_labels_run_the_hires_pass_as_the_first(app) -> None:
    plain = _run(app)
    labelled = _run(app, hr_sampler_name=SAME_SAMPLER, hr_scheduler=SAME_SCHEDULER, hr_checkpoint_name=SAME_CHECKPOINT)
    assert labelled.images[0].size == plain.images[0].size == (96, 96)
    assert np.array_equal(np.asarray(labelled.images[0]), np.asarray(plain.images[0]))
    assert labelled.infotexts == plain.infotexts
    assert "Hires sampler" not in plain.infotexts[0] and "Hires checkpoint" not in plain.infotexts[0]


def test_each_batch_gets_its_own_second_pass_with_its_seeds(app) -> None:
    """Two batches of two: the second pass runs per batch on that batch's seeds (FirstPass.seeds), so image 3 is
    the same as a single job at its seed."""
    batched = _run(app, batch_size=2, n_iter=2)
    assert [im.size for im in batched.images] == [(96, 96)] * 4 and batched.info["all_seeds"] == [7, 8, 9, 10]
    single = _run(app, seed=9)
    diff = np.abs(np.asarray(batched.images[2], dtype=np.int16) - np.asarray(single.images[0], dtype=np.int16))
    assert diff.max() <= 2 and (diff == 0).mean() > 0.99  # fp32 GEMMs block differently for a batch of 2 (EPYC)
    other = np.abs(np.asarray(batched.images[3], dtype=np.int16) - np.asarray(single.images[0], dtype=np.int16))
    assert other.mean() > 5 * max(diff.mean(), 0.01)


@pytest.mark.parametrize("field,value", [("hr_sampler_name", "No Such Sampler"), ("hr_scheduler", "Nope")])
def test_an_unknown_hires_sampler_or_schedule_is_refused(app, field, value) -> None:
    from webui.errors import InvalidRequest

    with pytest.raises(InvalidRequest):
        _run(app, **{field: value, "hr_sampler_name": "Euler" if field == "hr_scheduler" else value})
