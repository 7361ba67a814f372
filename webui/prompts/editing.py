"""Prompt editing `[from:to:when]` and alternation `[a|b]`: a prompt → the texts it reads as, step by step.

The grammar is A1111's (modules/prompt_parser.py, written there with lark); this is a hand-written recursive-descent
reader that accepts the same language and reproduces its observable results:

    prompt     := (group | plain | whitespace)*
    group      := "(" prompt ")" | "(" prompt ":" prompt ")" | "[" prompt "]"          emphasis: kept as written
                | "[" [prompt ":"] prompt ":" NUMBER "]"                                 editing
                | "[" prompt ("|" prompt)+ "]"                                           alternation
    top level  := (group | plain | stray "[" "]" "(" ")" ":")*

A stray bracket or colon at the top level is literal text. Two things make the whole prompt unreadable, and then it
is used as written for every step (A1111 does the same): a "|" outside an alternation, and a backslash at the very
end of the prompt or before a line break.

Steps: `when` with a "." is a fraction of the steps, otherwise a step number (A1111 ≥ 1.6, "new" scheduling); the
older rule (below 1 = fraction, else a step number) is `use_old_scheduling=True`. Either way the boundary is
`int(...)`, clamped to the step count. The schedule is a list of (end_step, text): the text applies up to and
including `end_step`, counted from 1 — see `Schedule.at` in conditioning.py for how a 0-based sampler step picks it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_SPECIAL = "\\[]():|"
_PLAIN = re.compile(r"[^\\\[\]():|]+")
# lark's SIGNED_NUMBER, with the optional whitespace A1111's grammar allows around it, then the closing bracket
_WHEN = re.compile(r"\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*\]")


class _Unreadable(Exception):
    """This bracket (or, at the top level, the whole prompt) does not parse."""


@dataclass
class _Edit:
    before: list | None  # None: the `[to:when]` form, which reads as nothing before `when`
    after: list
    when: str
    end: int = 0  # resolved per step count


@dataclass
class _Alternate:
    options: list[list]


def _escape(s: str, i: int) -> str:
    if i + 1 < len(s) and s[i + 1] != "\n":
        return s[i : i + 2]
    raise _Unreadable


def _read_prompt(s: str, i: int) -> tuple[list, int]:
    """Plain text, whitespace and groups up to one of `] ) : |` (or the end). A group inside must parse."""
    nodes: list = []
    while i < len(s):
        c = s[i]
        if c == "\\":
            nodes.append(_escape(s, i))
            i += 2
        elif c in "[(":
            node, i = _read_group(s, i)
            nodes.append(node)
        elif c in "]):|":
            break
        else:
            m = _PLAIN.match(s, i)
            assert m is not None  # the branches above took every character _PLAIN does not match
            nodes.append(m.group(0))
            i = m.end()
    return nodes, i


def _read_group(s: str, i: int) -> tuple[object, int]:
    n = len(s)
    first, j = _read_prompt(s, i + 1)
    if j >= n:
        raise _Unreadable
    c = s[j]
    if s[i] == "(":
        if c == ")":
            return ["(", first, ")"], j + 1
        if c == ":":
            second, k = _read_prompt(s, j + 1)
            if k < n and s[k] == ")":
                return ["(", first, ":", second, ")"], k + 1
        raise _Unreadable
    if c == "]":
        return ["[", first, "]"], j + 1
    if c == "|":
        options = [first]
        while j < n and s[j] == "|":
            option, j = _read_prompt(s, j + 1)
            options.append(option)
        if j < n and s[j] == "]":
            return _Alternate(options), j + 1
        raise _Unreadable
    if c == ":":
        m = _WHEN.match(s, j + 1)
        if m:  # [to:when]
            return _Edit(None, first, m.group(1)), m.end()
        second, k = _read_prompt(s, j + 1)
        if k < n and s[k] == ":":
            m = _WHEN.match(s, k + 1)
            if m:  # [from:to:when]
                return _Edit(first, second, m.group(1)), m.end()
    raise _Unreadable


def parse_editing(prompt: str) -> list | None:
    """The prompt as a node list, or None when A1111 would not parse it (then it is used as written)."""
    nodes: list = []
    i, n = 0, len(prompt)
    try:
        while i < n:
            c = prompt[i]
            if c in "[(":
                try:
                    node, i = _read_group(prompt, i)
                except _Unreadable:
                    node, i = c, i + 1  # a bracket that opens nothing is literal
                nodes.append(node)
            elif c in "]):":
                nodes.append(c)
                i += 1
            elif c == "|":
                return None
            elif c == "\\":
                nodes.append(_escape(prompt, i))
                i += 2
            else:
                m = _PLAIN.match(prompt, i)
                assert m is not None  # the branches above took every character _PLAIN does not match
                nodes.append(m.group(0))
                i = m.end()
    except (_Unreadable, RecursionError):
        return None
    return nodes


def _resolve(when: str, steps: int, int_offset: int, flt_offset: float, old: bool) -> int:
    v = float(when)
    if old:
        v = v * steps if v < 1 else v
    elif "." in when:
        v = (v - flt_offset) * steps
    else:
        v = v - int_offset
    if not math.isfinite(v):
        return steps if v > 0 else -1
    return min(steps, int(v))


def _walk(nodes, visit) -> None:
    for node in nodes:
        if isinstance(node, list):
            _walk(node, visit)
        elif isinstance(node, _Edit):
            visit(node)
            _walk(node.before or [], visit)
            _walk(node.after, visit)
        elif isinstance(node, _Alternate):
            visit(node)
            for option in node.options:
                _walk(option, visit)


def _text_at(nodes, step: int, out: list[str]) -> None:
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, list):
            _text_at(node, step, out)
        elif isinstance(node, _Edit):
            _text_at((node.before or []) if step <= node.end else node.after, step, out)
        else:
            _text_at(node.options[(step - 1) % len(node.options)], step, out)


def prompt_schedule(
    prompt: str, steps: int, hires_steps: int | None = None, use_old_scheduling: bool = False
) -> list[tuple[int, str]]:
    """A1111's get_learned_conditioning_prompt_schedules for one prompt: [(end_step, text), …], end steps ascending,
    the last one equal to `steps` (or `hires_steps` for a hires-fix pass)."""
    if hires_steps is None or use_old_scheduling:
        int_offset, flt_offset, total = 0, 0.0, steps
    else:  # hires pass: integers count on from the first pass, fractions above 1 reach into the second
        int_offset, flt_offset, total = steps, 1.0, hires_steps
    nodes = parse_editing(prompt)
    if nodes is None:
        return [(total, prompt)]
    ends = {total}

    def visit(node):
        if isinstance(node, _Edit):
            node.end = _resolve(node.when, total, int_offset, flt_offset, use_old_scheduling)
            if node.end >= 1:
                ends.add(node.end)
        else:
            ends.update(range(1, total + 1))

    _walk(nodes, visit)
    schedule = []
    for end in sorted(ends):
        out: list[str] = []
        _text_at(nodes, end, out)
        schedule.append((end, "".join(out)))
    return schedule


def entry_for_step(ends: list[int], step: int) -> int:
    """Which schedule entry a 0-based sampler step uses: A1111's reconstruct_cond_batch picks the first entry with
    step <= end_step. Its sampler counts from 0 while the ends count from 1, so `[a:b:5]` keeps `a` through step
    index 5 (six steps) — Easel keeps that, so pasted prompts give A1111's images. Past the last end: the last
    entry (A1111 would fall back to the first; its samplers never get there)."""
    for i, end in enumerate(ends):
        if step <= end:
            return i
    return len(ends) - 1


def texts_per_step(prompt: str, steps: int, **kw) -> list[str]:
    """The text each 0-based sampler step conditions on."""
    schedule = prompt_schedule(prompt, steps, **kw)
    ends = [e for e, _ in schedule]
    return [schedule[entry_for_step(ends, s)][1] for s in range(steps)]
