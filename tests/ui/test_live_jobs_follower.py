"""The live-jobs follower's messages, without a browser (#19 items 1-2): one follower shows every job of its page in
turn, another page's jobs never, and its last message is complete even after Gradio has processed the earlier ones
(Gradio pops `value` out of each update dict it is given: a re-sent dict came back without the gallery's images,
and a page that applied the messages late showed an empty gallery)."""

from __future__ import annotations

import warnings

import gradio as gr

from webui.ui.live_jobs import GENERATE, owner_of, queue_html
from webui.ui.txt2img_tab import Txt2ImgTab


def values(tab, **fields):
    return [fields.get(key, comp.value) for (key, _), comp in zip(tab.FIELDS, tab.field_components)]


def as_gradio(message: dict) -> dict:
    """What the follower meant by `message` (values of update dicts copied), then what Gradio does to it."""
    seen = {k: dict(v) if isinstance(v, dict) else v for k, v in message.items()}
    for v in message.values():
        if isinstance(v, dict) and v.get("__type__") == "update":
            v.pop("value", None)  # gradio.blocks.postprocess_update_dict
    return seen


def test_follower_shows_each_job_of_its_page_and_ends_with_a_complete_message(app):
    with gr.Blocks():
        tab = Txt2ImgTab(app)
    client, other = "a" * 32, "b" * 32
    jobs = []
    for prompt, who in (("a red circle", client), ("someone else's", other), ("a blue square", client)):
        job = tab.submit_values(*values(tab, prompt=prompt, steps=1, width=64, height=64, seed=3))
        job.owner = owner_of(None, who)
        jobs.append(job)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        messages = [as_gradio(m) for m in tab.follow_owned(None, client, jobs[0].id)]
    followed = [m[tab.job_id] for m in messages if m.get(tab.job_id)]
    assert jobs[1].id not in followed and followed[0] == jobs[0].id and followed[-1] == jobs[2].id
    shown = [m[tab.info] for m in messages if tab.gallery in m]
    assert len(shown) == 2 and "a red circle" in shown[0] and "a blue square" in shown[1]  # each job's images once

    last = messages[-1]
    assert len(last[tab.gallery]["value"]) == 1 and "a blue square" in last[tab.info]
    assert last[tab.generate]["value"] == GENERATE and last[tab.interrupt]["visible"] is False
    assert last[tab.skip]["visible"] is False and last[tab.queue_status] == ""
    assert last[tab.results]["infotexts"] and last[tab.preview]["visible"] is False

    # a reload's token with nothing of this page's running: one message that changes nothing (a generator that
    # yields nothing makes Gradio set every output to None)
    for nothing in (tab.follow_owned(None, client, "reconnect:0"), tab.follow_owned(None, None, None)):
        assert [as_gradio(m) for m in nothing] == [{tab.generate: {"__type__": "update"}}]


def test_owner_and_queue_line():
    class Request:
        username = "ann"

    assert owner_of(Request(), "x" * 32) == "user:ann"  # with --gradio-auth: the user, from any browser
    assert owner_of(None, "x" * 32) == "browser:" + "x" * 32
    assert owner_of(None, None) is None and owner_of(None, 42) is None
    assert queue_html([]) == ""
    assert "Queued: position 2 (+1 more)" in queue_html([2, 3])


def test_a_job_submitted_before_the_browser_id_loaded_is_found_after_a_reload(app):
    """Generate clicked before the page's browser id arrived: the follower claims the job for the page once the id
    is known, so a reloaded page finds it first (it once found only the page's later job, at position 2)."""
    with gr.Blocks():
        tab = Txt2ImgTab(app)
    client = "c" * 32
    release = hold(app)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, _, early = tab.on_generate(None, None, *values(tab, prompt="early", steps=1, width=64, height=64))
            _, _, late = tab.on_generate(None, client, *values(tab, prompt="late", steps=1, width=64, height=64))
            assert app.jobs.get(early).owner not in (None, owner_of(None, client))
            api_job = app.jobs.submit("txt2img", {}, lambda job: None, record=False)  # no owner: never claimable
            next(tab.follow_owned(None, client, api_job.id))
            assert api_job.owner is None
            first = next(tab.follow_owned(None, client, early))  # the page's follower, id loaded meanwhile
            assert first[tab.job_id] == early
            reloaded = next(tab.follow_owned(None, client, "reconnect:1"))
            assert reloaded[tab.job_id] == early  # the reload follows the early job first, then the late one
            assert [j.id for j in app.jobs.active(owner_of(None, client))] == [early, late]
    finally:
        release.set()


def hold(app):
    import threading

    release = threading.Event()
    app.jobs.submit("test-hold", {}, lambda job: release.wait(60), record=False)
    return release
