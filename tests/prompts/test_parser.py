"""A1111's prompt grammar: a table of prompts and what A1111 makes of them (many are A1111's own doctests in
modules/prompt_parser.py; the rest follow its code)."""

from __future__ import annotations

import pytest

from webui.prompts.parser import (
    ExtraNetworkTag,
    extract_extra_networks,
    parse_attention,
    prompt_schedule,
    split_and,
    texts_per_step,
)

ATTENTION = [
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
    ("a [less] word", [("a ", 1.0), ("less", 1 / 1.1), (" word", 1.0)]),
    ("((a))", [("a", 1.1 * 1.1)]),
    ("[[a]]", [("a", 1 / 1.1 / 1.1)]),
    ("(a:1.5)", [("a", 1.5)]),
    ("(a: 0.5 )", [("a", 0.5)]),
    ("(a:-1)", [("a", -1.0)]),
    ("((a:2):1.5)", [("a", 3.0)]),
    ("([a]:1.5)", [("a", 1 / 1.1 * 1.5)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
    (
        "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
        [
            ("a ", 1.0),
            ("house", 1.1 * 1.1 * 1.3),
            (" ", 1.1),
            ("on", 1.0),
            (" a ", 1.1),
            ("hill", 0.55),
            (", sun, ", 1.1),
            ("sky", 1.1**4),
            (".", 1.1),
        ],
    ),
    # escapes
    ("\\(literal\\]", [("(literal]", 1.0)]),
    ("\\[x\\) \\\\ y", [("[x) \\ y", 1.0)]),
    ("a\\b", [("ab", 1.0)]),  # a lone backslash disappears
    # malformed: an unmatched opener weights the rest, an unmatched closer is literal
    ("(unbalanced", [("unbalanced", 1.1)]),
    ("a [unbalanced", [("a ", 1.0), ("unbalanced", 1 / 1.1)]),
    ("a) b] c", [("a) b] c", 1.0)]),
    ("x:1.5)", [("x:1.5)", 1.0)]),
    ("(a:1.2.3)", [("a:1.2.3", 1.1)]),  # A1111 raises here; Easel keeps the text and closes the bracket
    ("a: b", [("a: b", 1.0)]),
    ("", [("", 1.0)]),
    ("()", [("", 1.0)]),
    # BREAK
    ("a BREAK b", [("a", 1.0), ("BREAK", -1.0), ("b", 1.0)]),
    ("a\nBREAK\nb, (c)", [("a", 1.0), ("BREAK", -1.0), ("b, ", 1.0), ("c", 1.1)]),
    ("aBREAKb BREAKING", [("aBREAKb BREAKING", 1.0)]),
    ("(a BREAK b)", [("a", 1.1), ("BREAK", -1.1), ("b", 1.1)]),  # weighted: no longer a BREAK, as in A1111
]


@pytest.mark.parametrize("text,expected", ATTENTION)
def test_parse_attention(text, expected):
    got = parse_attention(text)
    assert [s for s, _ in got] == [s for s, _ in expected]
    assert [w for _, w in got] == pytest.approx([w for _, w in expected])


SCHEDULES = [
    ("test", 10, [(10, "test")]),
    ("a [b:3]", 10, [(3, "a "), (10, "a b")]),
    ("a [b: 3]", 10, [(3, "a "), (10, "a b")]),
    ("[a:b: 3 ]", 10, [(3, "a"), (10, "b")]),
    ("a [[[b]]:2]", 10, [(2, "a "), (10, "a [[b]]")]),
    ("[(a:2):3]", 10, [(3, ""), (10, "(a:2)")]),
    ("a [b : c : 1] d", 10, [(1, "a b  d"), (10, "a  c  d")]),
    ("a[b:[c:d:2]:1]e", 10, [(1, "abe"), (2, "ace"), (10, "ade")]),
    ("a [b:.5] c", 10, [(5, "a  c"), (10, "a b c")]),
    ("[a:b:0.5]", 10, [(5, "a"), (10, "b")]),
    ("[a:b:0.25]", 10, [(2, "a"), (10, "b")]),  # int(2.5)
    ("[a:b:0.5]", 7, [(3, "a"), (7, "b")]),  # int(3.5)
    ("[a::0.5]", 10, [(5, "a"), (10, "")]),
    ("[a:b:15]", 10, [(10, "a")]),  # clamped to the step count
    ("[a:b:0]", 10, [(10, "b")]),
    ("[a:b:1.5]", 10, [(10, "a")]),  # "." means a fraction (A1111 ≥ 1.6): 15 steps, clamped
    ("[a:b:1e0]", 10, [(1, "a"), (10, "b")]),
    ("(a:[b:c:5])", 10, [(5, "(a:b)"), (10, "(a:c)")]),
    ("[a|b|c]", 4, [(1, "a"), (2, "b"), (3, "c"), (4, "a")]),
    ("[a|(b:1.1)]", 4, [(1, "a"), (2, "(b:1.1)"), (3, "a"), (4, "(b:1.1)")]),
    ("[fe|]male", 4, [(1, "female"), (2, "male"), (3, "female"), (4, "male")]),
    ("[fe|||]male", 5, [(1, "female"), (2, "male"), (3, "male"), (4, "male"), (5, "female")]),
    ("[[a|b]:c:0.5]", 4, [(1, "a"), (2, "b"), (3, "c"), (4, "c")]),
    # malformed: literal brackets, or (a stray "|", a trailing backslash) the prompt as written
    ("a [unbalanced", 10, [(10, "a [unbalanced")]),
    ("((a][:b:c [d:3]", 10, [(3, "((a][:b:c "), (10, "((a][:b:c d")]),
    ("[a [b:3]", 10, [(3, "[a "), (10, "[a b")]),
    ("[a:b:c:3]", 10, [(10, "[a:b:c:3]")]),
    ("a | b [c:d:5]", 10, [(10, "a | b [c:d:5]")]),
    ("a [{b|d{:.5] c", 10, [(10, "a [{b|d{:.5] c")]),
    ("[a:b:5", 10, [(10, "[a:b:5")]),
    ("a\\", 10, [(10, "a\\")]),
    ("\\[a:b:5\\]", 10, [(10, "\\[a:b:5\\]")]),
    ("(" * 3000, 10, [(10, "(" * 3000)]),
]


@pytest.mark.parametrize("prompt,steps,expected", SCHEDULES)
def test_prompt_schedule(prompt, steps, expected):
    assert prompt_schedule(prompt, steps) == expected


def test_old_scheduling_and_hires_pass():
    assert prompt_schedule("[a:b:1.5]", 10, use_old_scheduling=True) == [(1, "a"), (10, "b")]
    assert prompt_schedule("a [b:.5] c", 10, hires_steps=10) == [(10, "a b c")]
    assert prompt_schedule("a [b:1.5] c", 10, hires_steps=10) == [(5, "a  c"), (10, "a b c")]
    assert prompt_schedule("a [b:15] c", 10, hires_steps=10) == [(5, "a  c"), (10, "a b c")]


def test_per_step_texts_follow_a1111s_sampler_count():
    # A1111's denoiser counts steps from 0 and keeps an entry while step <= its end: `a` runs through index 5
    assert texts_per_step("[a:b:0.5]", 10) == ["a"] * 6 + ["b"] * 4
    assert texts_per_step("[a:b:2]", 5) == ["a", "a", "a", "b", "b"]
    assert texts_per_step("[a|b]", 6) == ["a", "a", "b", "a", "b", "a"]
    assert texts_per_step("x [a:b:0.5] [c|d]", 4) == ["x a c", "x a c", "x a d", "x b c"]


AND = [
    ("a AND b", [("a", 1.0), (" b", 1.0)]),
    ("a AND b:0.5", [("a", 1.0), (" b", 0.5)]),
    ("a cat:1.5", [("a cat", 1.5)]),
    ("x AND y :  -2 ", [("x", 1.0), (" y", -2.0)]),
    ("(a:1.2) AND [b:c:0.5]", [("(a:1.2)", 1.0), (" [b:c:0.5]", 1.0)]),
    ("ANDROID and sandals", [("ANDROID and sandals", 1.0)]),
    ("a AND", [("a", 1.0), ("", 1.0)]),
]


@pytest.mark.parametrize("prompt,expected", AND)
def test_split_and(prompt, expected):
    assert split_and(prompt) == expected


def test_extra_network_tags_are_taken_out():
    clean, tags = extract_extra_networks("a <lora:foo:0.5> b, <hypernet:h:1:unet=0.2><lora:bar>")
    assert clean == "a  b, "
    assert tags == [
        ExtraNetworkTag("lora", "foo", ("0.5",)),
        ExtraNetworkTag("hypernet", "h", ("1", "unet=0.2")),
        ExtraNetworkTag("lora", "bar"),
    ]
    assert tags[0].text == "<lora:foo:0.5>" and tags[1].named == {"unet": "0.2"} and tags[1].positional == ["1"]


@pytest.mark.parametrize(
    "tag,expected",
    [
        ("<lora:x>", (1.0, 1.0, None)),
        ("<lora:x:0.6>", (0.6, 0.6, None)),
        ("<lora:x:0.3:0.7>", (0.3, 0.7, None)),
        ("<lora:x:1:0.5:8>", (1.0, 0.5, 8)),
        ("<lora:x:te=0.2:unet=1>", (0.2, 1.0, None)),
        ("<lora:x:0.4:unet=0>", (0.4, 0.0, None)),
    ],
)
def test_lora_multipliers(tag, expected):
    assert extract_extra_networks(tag)[1][0].lora_multipliers() == expected


@pytest.mark.parametrize("prompt", ["<lora:>", "<not a tag>", "a < b > c", "<:x>"])
def test_text_that_is_not_a_tag_stays(prompt):
    assert extract_extra_networks(prompt) == (prompt, [])


@pytest.mark.parametrize(
    "tag,part",
    [
        ("<lora:x:abc>", "the weight 'abc' is not a number"),
        ("<lora:x:0.5:zz>", "the UNet weight 'zz' is not a number"),
        ("<lora:x:te=q>", "the text-encoder weight 'q' is not a number"),
        ("<lora:x:nan>", "the weight 'nan' is not a number"),
        ("<lora:x:inf:1>", "the text-encoder weight 'inf' is not a number"),
        ("<lora:x:1:1:k>", "the dyn value 'k' is not a whole number"),
    ],
)
def test_bad_lora_tag_says_which_part_is_wrong(tag, part):
    """#19 item 17: the warning names the part in plain words, never Python's float() error."""
    from webui.lora.tags import parse_prompt

    parsed = parse_prompt(f"a cat {tag}")
    assert parsed.loras == [] and len(parsed.warnings) == 1
    assert part in parsed.warnings[0] and tag in parsed.warnings[0]
    assert "could not convert" not in parsed.warnings[0]
