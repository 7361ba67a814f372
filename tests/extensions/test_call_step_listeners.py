"""PipelineCall.on_step (API 1, additive): a pipeline_call hook's per-call step listener sees exactly the steps of
the calls it was added to (here: the hires pass only), unlike a global step_end hook (which keeps jobs off Ray
workers, docs/scaling.md)."""

from __future__ import annotations

import pytest

from tests.extensions.conftest import txt2img, write_extension


@pytest.fixture
def ext_dir(data_dir):
    return data_dir / "extensions"


def test_a_call_listener_sees_only_its_own_call(make_app, serve, ext_dir):
    write_extension(
        ext_dir,
        "percall",
        """
        SEEN = []

        def setup(ext):
            def on_call(call):
                if call.hires:
                    call.on_step(lambda info: SEEN.append((info.step, info.total, info.kind)))
                return None
            ext.on("pipeline_call", on_call)
            ext.add_api_route("/seen", lambda: SEEN)
    """,
    )
    client = serve(make_app("--nowebui"))
    txt2img(client, steps=4)
    assert client.get("/ext/percall/seen").json() == []  # no hires pass: the listener was never added
    txt2img(client, steps=4, enable_hr=True, hr_scale=1.5, hr_second_pass_steps=3, denoising_strength=0.5)
    seen = client.get("/ext/percall/seen").json()
    # only the hires pass's steps (≤ 3), not the first pass's 4, counted from 1 in that call
    assert [s[0] for s in seen] == list(range(1, len(seen) + 1)) and 1 <= len(seen) <= 3, seen
    assert {s[1] for s in seen} == {len(seen)} and {s[2] for s in seen} == {"txt2img"}
