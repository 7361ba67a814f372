"""The RAM cache's byte budget (#18 Memory: "counts bytes, not checkpoints", `sd_checkpoints_limit` kept for
A1111): over `sd_checkpoints_ram_mb` the least recently used models leave, never the active one; 0 keeps only the
count. Each model's weight is what /easel/v1/system reports for it."""

from __future__ import annotations

import math

import pytest

from webui.models.memory_report import model_bytes


def test_a_byte_budget_evicts_the_oldest_but_never_the_active_model(app, client):
    app.set_options({"sd_checkpoints_limit": 5})
    titles = [i.title for i in app.catalog.list()][:2]
    app.switch_checkpoint(titles[0])
    app.switch_checkpoint(titles[1])
    assert app.models.cached_titles() == titles  # no budget: the count (5) keeps both
    one = model_bytes(app.models.active)
    reported = [m for m in client.get("/easel/v1/system").json()["models"] if m["active"]][0]
    assert one == reported["bytes_ram"] + reported["bytes_device"]
    assert app.models.cached_bytes() >= 2 * one * 0.9

    budget_mb = math.ceil(1.5 * one / 2**20)  # room for one model, not two
    app.set_options({"sd_checkpoints_ram_mb": budget_mb})
    app.switch_checkpoint(titles[0])  # cached: no read, and the older one (titles[1]) goes
    assert app.models.cached_titles() == [titles[0]]
    assert app.models.cached_bytes() <= budget_mb * 2**20

    app.set_options({"sd_checkpoints_ram_mb": 1})  # smaller than any model: the active one still stays
    app.switch_checkpoint(titles[1])
    assert app.models.cached_titles() == [titles[1]] and app.models.active.info.title == titles[1]

    app.set_options({"sd_checkpoints_ram_mb": 0})  # off: the count alone again
    app.switch_checkpoint(titles[0])
    assert app.models.cached_titles() == [titles[1], titles[0]]


@pytest.mark.parametrize("value", [-1, "NaN", "Infinity", 1e12, "../1", None])
def test_hostile_budgets_are_refused_and_nothing_is_saved(client, data_dir, value):
    before = (data_dir / "config.json").read_text() if (data_dir / "config.json").exists() else None
    r = client.post("/sdapi/v1/options", json={"sd_checkpoints_ram_mb": value})
    assert 400 <= r.status_code < 500 and isinstance(r.json(), dict), r.text
    after = (data_dir / "config.json").read_text() if (data_dir / "config.json").exists() else None
    assert after == before
