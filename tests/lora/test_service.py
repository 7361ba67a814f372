"""The LoRA service on the app's real loaded checkpoint: tags change the output, weights, combining, hot swap
without file reads, exact base output without tags, infotext hashes, and every file format users bring."""

from __future__ import annotations

import numpy as np
import pytest

from tests.lora.conftest import render
from tests.lora.factory import write_diffusers, write_kohya, write_loha
from webui.infotext import build_infotext, parse_infotext
from webui.lora.tags import LoraTag, parse_prompt
from webui.models.hashing import addnet_hash


def _run(service, model, prompt):
    text, applied = service.apply_prompt(model, prompt)
    return render(model.pipeline, text), applied


def _differs(a, b) -> bool:
    return int(np.abs(a - b).max()) > 2


def test_tags_weights_combine_and_base_is_exact(app, lora_service):
    lora = app.paths.lora_dir
    write_kohya(lora / "alpha.safetensors", seed=1)
    write_kohya(lora / "beta.safetensors", seed=2)
    lora_service.refresh()
    model = app.models.active
    base, applied = _run(lora_service, model, "a red circle")
    assert applied.infotext_params == {} and applied.warnings == []

    one, applied = _run(lora_service, model, "a red circle <lora:alpha:1>")
    assert _differs(one, base) and applied.warnings == []
    zero, _ = _run(lora_service, model, "a red circle <lora:alpha:0>")
    assert int(np.abs(zero - base).max()) <= 2
    b, _ = _run(lora_service, model, "a red circle <lora:beta:1>")
    both, applied = _run(lora_service, model, "<lora:alpha:1> a red circle <lora:beta:1>")
    assert _differs(both, one) and _differs(both, b) and _differs(b, one)
    assert [t.name for t in applied.active] == ["alpha", "beta"]

    again, applied = _run(lora_service, model, "a red circle")
    assert np.array_equal(again, base) and applied.infotext_params == {}
    assert app.models.file_loads == 1  # the checkpoint was never reloaded


def test_infotext_hashes(app, lora_service):
    pa = write_kohya(app.paths.lora_dir / "alpha.safetensors", seed=1)
    pb = write_kohya(app.paths.lora_dir / "sub" / "beta.safetensors", seed=2)
    lora_service.refresh()
    _, applied = lora_service.apply_prompt(app.models.active, "x <lora:alpha:0.5> <lora:beta:1:0.5>")
    expected = f"alpha: {addnet_hash(pa)[:12]}, beta: {addnet_hash(pb)[:12]}"
    assert applied.infotext_params == {"Lora hashes": expected}
    text = build_infotext("x <lora:alpha:0.5>", "", {"Steps": 3, **applied.infotext_params})
    assert f'Lora hashes: "{expected}"' in text
    assert parse_infotext(text)["Lora hashes"] == expected


def test_second_use_reads_no_file(app, lora_service, monkeypatch):
    write_kohya(app.paths.lora_dir / "alpha.safetensors", seed=1)
    write_kohya(app.paths.lora_dir / "beta.safetensors", seed=2)
    lora_service.refresh()
    model = app.models.active
    first, _ = _run(lora_service, model, "x <lora:alpha:1>")
    _run(lora_service, model, "x <lora:beta:0.7>")
    assert lora_service.file_reads == 2

    import webui.lora.catalog as catalog_mod

    def no_reads(*a, **k):
        raise AssertionError("a LoRA file was read again")

    monkeypatch.setattr(lora_service, "reader", no_reads)
    monkeypatch.setattr(catalog_mod, "addnet_hash", no_reads)
    monkeypatch.setattr(catalog_mod, "_read_keys", no_reads)
    second, applied = _run(lora_service, model, "x <lora:alpha:1>")
    _run(lora_service, model, "x <lora:alpha:0.5> <lora:beta:1>")
    assert np.array_equal(first, second) and lora_service.file_reads == 2 and "Lora hashes" in applied.infotext_params


def test_te_and_unet_weights_are_separate(app, lora_service):
    from webui.prompts.encoder import encode_texts

    write_kohya(app.paths.lora_dir / "alpha.safetensors", seed=1)
    lora_service.refresh()
    model = app.models.active
    pipe = model.pipeline
    base_cond = encode_texts(pipe, ["a cat"])
    lora_service.prepare(model, [LoraTag("alpha", te_weight=0.0, unet_weight=1.0)])
    assert (encode_texts(pipe, ["a cat"]) - base_cond).abs().max() == 0  # UNet only: the text encoder is untouched
    unet_only = render(pipe, "a cat")
    lora_service.prepare(model, [LoraTag("alpha", te_weight=1.0, unet_weight=0.0)])
    assert (encode_texts(pipe, ["a cat"]) - base_cond).abs().max() > 1e-3
    te_only = render(pipe, "a cat")
    assert _differs(unet_only, te_only)


def test_unknown_and_broken_loras_warn(app, lora_service):
    app.paths.lycoris_dir.mkdir(parents=True, exist_ok=True)
    write_loha(app.paths.lycoris_dir / "hada.safetensors")
    lora_service.refresh()
    model = app.models.active
    base, _ = _run(lora_service, model, "x")
    out, applied = _run(lora_service, model, "x <lora:nope:1> <lora:hada:1> <hypernet:h:1>")
    assert np.array_equal(out, base)
    assert "Networks not found: nope" in applied.warnings
    assert any("hada" in w and "LoHa" in w for w in applied.warnings)
    assert any("hypernet" in w for w in applied.warnings)


@pytest.mark.parametrize("fmt", ["sgm", "diffusers-format", "locon"])
def test_formats_load(app, lora_service, fmt):
    lora = app.paths.lora_dir
    write_kohya(lora / "ref.safetensors", seed=4)
    if fmt == "sgm":
        p = write_kohya(lora / "other.safetensors", seed=4, naming="sgm")
        from safetensors import safe_open

        with safe_open(str(p), "pt") as f:
            assert any(k.startswith("lora_unet_input_blocks_") for k in f.keys())
    elif fmt == "locon":
        write_kohya(lora / "other.safetensors", seed=4, unet_modules=["to_q", "to_v", "conv1", "conv2"])
    else:
        write_diffusers(lora / "other.safetensors", seed=4)
    lora_service.refresh()
    assert lora_service.catalog.find("other").format == {"sgm": "kohya-sgm", "locon": "locon"}.get(fmt, "peft")
    model = app.models.active
    base, _ = _run(lora_service, model, "x")
    ref, _ = _run(lora_service, model, "x <lora:ref:1>")
    other, applied = _run(lora_service, model, "x <lora:other:1>")
    assert applied.warnings == [] and _differs(ref, base) and _differs(other, base)
    if fmt != "locon":
        assert int(np.abs(ref - other).max()) <= 1  # the same weights, whichever naming


def test_lru_eviction_and_changed_file(app):
    from webui.lora.catalog import LoraCatalog
    from webui.lora.service import LoraService

    service = LoraService(LoraCatalog([app.paths.lora_dir], app.hashes), max_loaded=1)
    write_kohya(app.paths.lora_dir / "alpha.safetensors", seed=1)
    write_kohya(app.paths.lora_dir / "beta.safetensors", seed=2)
    service.refresh()
    model = app.models.active
    for tag in ("alpha", "beta", "alpha"):
        service.prepare(model, [LoraTag(tag)])
    assert service.file_reads == 3 and service.held_names(model) == ["alpha"]
    import os

    path = write_kohya(app.paths.lora_dir / "alpha.safetensors", seed=5)
    os.utime(path, ns=(1, 1))  # a retrained file: new mtime
    service.refresh()
    service.prepare(model, [LoraTag("alpha")])
    assert service.file_reads == 4


def test_parse_prompt_syntax():
    p = parse_prompt("a <lora:x> b <lora:y:0.5> <lora:z:0.2:0.8> <lyco:w:te=0.1:unet=0.3> <lora:q:bad>")
    assert p.text.split() == ["a", "b"]
    assert [(t.name, t.te_weight, t.unet_weight) for t in p.loras] == [
        ("x", 1.0, 1.0),
        ("y", 0.5, 0.5),
        ("z", 0.2, 0.8),
        ("w", 0.1, 0.3),
    ]
    assert len(p.warnings) == 1 and "q" in p.warnings[0]
