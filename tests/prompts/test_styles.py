"""Prompt styles (styles.csv as A1111 reads and writes it), the styles API route, and the prompt-box UI tools
(token counter, styles row callbacks, the Ctrl+Up/Down script run under node)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from types import SimpleNamespace

import pytest

from webui.errors import InvalidRequest, NotFound
from webui.generation.requests import Txt2ImgRequest
from webui.prompts.styles import StyleStore, merge_prompts

A1111_CSV = (
    "\ufeffname,prompt,negative_prompt\n"
    '"#  Portraits",,\n'
    'cinematic,"{prompt}, cinematic still, (film grain:1.2)","cartoon, drawing"\n'
    'sharp, "highly detailed, sharp focus", blurry\n'
    'only_neg,,"lowres, bad anatomy"\n'
)


@pytest.fixture
def store(tmp_path):
    (tmp_path / "styles.csv").write_text(A1111_CSV, encoding="utf-8")
    return StyleStore([tmp_path / "styles.csv"])


def test_reads_a1111_csv(store):
    assert store.names() == ["cinematic", "sharp", "only_neg"]  # "#" rows are dividers, not styles
    assert store.api()[1] == {"name": "sharp", "prompt": "highly detailed, sharp focus", "negative_prompt": "blurry"}


def test_prompt_placeholder_and_appending(store):
    assert store.apply("a cat", "", ["cinematic"]) == ("a cat, cinematic still, (film grain:1.2)", "cartoon, drawing")
    assert store.apply("a cat ", "ugly", ["sharp"]) == ("a cat, highly detailed, sharp focus", "ugly, blurry")
    # in order: each style wraps what the previous ones made
    assert (
        store.apply("a cat", "", ["sharp", "cinematic"])[0]
        == "a cat, highly detailed, sharp focus, cinematic still, (film grain:1.2)"
    )
    assert store.apply("", "", ["sharp", "only_neg"]) == ("highly detailed, sharp focus", "blurry, lowres, bad anatomy")
    assert store.apply("a cat", "x", []) == ("a cat", "x")
    assert merge_prompts("{prompt} and {prompt}", "a") == "a and a"


def test_unknown_style_is_an_invalid_request_naming_it(store):
    with pytest.raises(InvalidRequest, match="'nope'"):
        store.apply("a cat", "", ["sharp", "nope"])
    with pytest.raises(InvalidRequest, match="nope"):
        store.apply_to_request(Txt2ImgRequest(prompt="a", styles=["nope"]))


def test_apply_to_request_styles_prompts_and_hires_prompts(store):
    req = Txt2ImgRequest(prompt="a cat", negative_prompt="ugly", styles=["sharp"], hr_prompt="a big cat")
    out = store.apply_to_request(req)
    assert out.prompt == "a cat, highly detailed, sharp focus" and out.negative_prompt == "ugly, blurry"
    assert out.hr_prompt == "a big cat, highly detailed, sharp focus" and out.hr_negative_prompt == ""
    assert out.styles == ["sharp"] and req.prompt == "a cat"  # the original request is untouched
    plain = Txt2ImgRequest(prompt="a cat")
    assert store.apply_to_request(plain) is plain


def test_csv_round_trip_keeps_rows_and_a1111_format(store, tmp_path):
    tricky = 'a "quoted", multi\nline prompt, {prompt}'
    store.save("tricky", tricky, "neg, with comma")
    store.save("sharp", "sharper", "")  # replaced in place
    raw = (tmp_path / "styles.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbfname,prompt,negative_prompt\r\n")  # A1111 writes utf-8-sig
    again = StyleStore([tmp_path / "styles.csv"])
    assert again.names() == ["cinematic", "sharp", "only_neg", "tricky"]
    assert again.get("tricky").prompt == tricky and again.get("tricky").negative_prompt == "neg, with comma"
    assert again.get("sharp").prompt == "sharper"
    assert "#  Portraits" in (tmp_path / "styles.csv").read_text(encoding="utf-8-sig")  # the divider survives
    assert again.apply("x", "", ["tricky"])[0] == 'a "quoted", multi\nline prompt, x'


def test_save_and_delete_are_atomic(store, tmp_path, monkeypatch):
    store.save("new", "p", "n")
    store.delete("cinematic")
    assert store.names() == ["sharp", "only_neg", "new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["styles.csv"]  # no temp files left
    before = (tmp_path / "styles.csv").read_bytes()

    def crash(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        store.save("doomed", "p", "n")
    with pytest.raises(OSError):
        store.delete("sharp")
    monkeypatch.undo()
    assert (tmp_path / "styles.csv").read_bytes() == before  # never half-written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["styles.csv"]
    with pytest.raises(NotFound):
        store.delete("ghost")
    with pytest.raises(InvalidRequest):
        store.save("  ", "p", "n")


def test_several_files_new_styles_go_to_the_first(tmp_path):
    first, second = tmp_path / "mine.csv", tmp_path / "shared.csv"
    second.write_text("name,prompt,negative_prompt\nshared,from shared,\n", encoding="utf-8")
    store = StyleStore([first, second])  # the first does not exist yet
    assert store.names() == ["shared"]
    store.save("mine", "from mine", "")
    store.save("shared", "edited", "")
    assert [r.split(",")[0] for r in first.read_text(encoding="utf-8-sig").splitlines()] == ["name", "mine"]
    assert "edited" in second.read_text(encoding="utf-8-sig")
    assert StyleStore([first, second]).get("shared").prompt == "edited"


def test_hand_edits_are_read_again(store, tmp_path):
    path = tmp_path / "styles.csv"
    path.write_text(path.read_text(encoding="utf-8-sig") + "handmade,by hand,\n", encoding="utf-8")
    os.utime(path, ns=(1, 1))  # a different mtime, even on a coarse clock
    assert "handmade" in store.names()
    store.save("after", "x", "")
    assert {"handmade", "after"} <= set(store.names())


def test_prompt_styles_route(store):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from webui.api.prompts import build_prompts_router

    api = FastAPI()
    api.include_router(build_prompts_router(SimpleNamespace(styles=store)))
    body = TestClient(api).get("/sdapi/v1/prompt-styles").json()
    assert [s["name"] for s in body] == ["cinematic", "sharp", "only_neg"]
    assert body[0] == {
        "name": "cinematic",
        "prompt": "{prompt}, cinematic still, (film grain:1.2)",
        "negative_prompt": "cartoon, drawing",
    }


# --- UI tools ----------------------------------------------------------------------------------------------------
def test_token_counter_text():
    from webui.ui.prompt_tools import counter_text

    app = SimpleNamespace(models=SimpleNamespace(active=None), embeddings=None)
    assert counter_text(app, "") == "0/75"
    assert counter_text(app, "a red cat") == "3/75"
    assert counter_text(app, ", ".join(["a red cat"] * 30)) == "119/150"
    assert counter_text(app, "red BREAK cat", "bad steps") == "76/150"
    assert counter_text(app, "", negative=True) == "0/75"


def test_styles_row_callbacks(store):
    import gradio as gr

    from webui.ui.prompt_tools import StylesRow, TokenCounter

    app = SimpleNamespace(styles=store, models=SimpleNamespace(active=None), embeddings=None)
    with gr.Blocks():
        prompt, negative = gr.Textbox(elem_id="t_prompt"), gr.Textbox(elem_id="t_neg_prompt")
        counter = TokenCounter(app, "t", prompt)
        negative_counter = TokenCounter(app, "t", negative, negative=True)
        row = StylesRow(app, "t", prompt, negative)
        counter.wire(gr.Slider(1, 150, value=20))
        negative_counter.wire()
    assert counter.html.elem_id == "t_token_counter" and negative_counter.html.elem_id == "t_negative_token_counter"
    assert counter.update("a [red:blue:5] cat", 10) == '<span class="easel-token-counter">3/75</span>'
    p, n, dropdown, status = row.on_apply("a cat", "", ["sharp"])
    assert (p, n, dropdown["value"]) == ("a cat, highly detailed, sharp focus", "blurry", [])
    assert "easel-error" in row.on_apply("a cat", "", ["nope"])[3]
    update, status = row.on_save("mine", "p", "n", ["sharp"])
    assert "mine" in update["choices"] and update["value"] == ["sharp"] and "Saved" in status
    update, status = row.on_delete("", ["sharp", "mine"])
    assert update["choices"] == ["cinematic", "only_neg"] and update["value"] == []
    assert "easel-error" in row.on_delete("ghost", [])[1]


JS_CASES = [  # (text, selection start, end, up) -> text after, selected text after
    ("a cat", 2, 5, True, "a (cat:1.1)", "cat"),
    ("a cat", 2, 5, False, "a (cat:0.9)", "cat"),
    ("a (cat:1.1)", 3, 6, True, "a (cat:1.2)", "cat"),
    ("a (cat:1.1)", 3, 6, False, "a cat", "cat"),  # back to 1: the brackets go
    ("a red cat", 3, 3, True, "a (red:1.1) cat", "red"),  # no selection: the word at the caret
    ("a (red cat:1.5), dog", 6, 6, False, "a (red cat:1.4), dog", "red cat"),  # the block at the caret
    ("a ((cat))", 4, 7, True, "a (cat:1.3)", "cat"),  # old style ((x)) = 1.21 ≈ 1.2, then +0.1
    ("a [cat]", 3, 6, False, "a (cat:0.8)", "cat"),
    ("<lora:foo:0.8>", 3, 3, True, "<lora:foo:0.9>", "lora:foo"),
    ("a cat ", 2, 6, True, "a (cat:1.1) ", "cat"),  # trailing spaces stay outside
    ("", 0, 0, True, None, None),
]


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_ctrl_up_down_script():
    from webui.ui.prompt_tools import PROMPT_JS, prompt_head

    assert prompt_head().startswith("<script>(") and prompt_head().endswith(")();</script>")
    script = (
        "globalThis.window = globalThis; globalThis.document = {addEventListener() {}};\n"
        f"({PROMPT_JS})();\n"
        f"const cases = {json.dumps([c[:4] for c in JS_CASES])};\n"
        "console.log(JSON.stringify(cases.map(([t, s, e, up]) => {\n"
        "  const r = window.easelEditAttention(t, s, e, up);\n"
        "  return r && [r.text, r.text.slice(r.start, r.end)];\n"
        "})));\n"
    )
    out = subprocess.run(["node", "-e", script], capture_output=True, text=True, timeout=30, check=True).stdout
    got = json.loads(out)
    expected = [None if c[4] is None else [c[4], c[5]] for c in JS_CASES]
    assert got == expected
