"""#17: behaviour Easel puts on library objects goes through webui/models/runtime.py only. An AST scan of webui/ and
extensions/ for assignments of a method (forward/decode/encode/__call__) or an `_easel_*` attribute to any object but
`self`; and the runtime's `override` puts back exactly what was there."""

from __future__ import annotations

import ast
from pathlib import Path

import torch

from webui.models import runtime

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = {ROOT / "webui" / "models" / "runtime.py"}
METHODS = {"forward", "decode", "encode", "__call__"}


def _patched_name(name: str) -> bool:
    return name.startswith("_easel_") or name in METHODS


def patches_in(source: str) -> list[str]:
    """`obj.attr = …` (also augmented, annotated, in a tuple, `del`) and `setattr(obj, "attr", …)` on an object other
    than `self`, for a method name or an `_easel_*` attribute."""
    found = []

    def targets(node: ast.AST) -> list[ast.AST]:
        if isinstance(node, (ast.Tuple, ast.List)):
            return [t for elt in node.elts for t in targets(elt)]
        return [node]

    for node in ast.walk(ast.parse(source)):
        lhs: list[ast.AST] = []
        if isinstance(node, ast.Assign):
            lhs = [t for target in node.targets for t in targets(target)]
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            lhs = [node.target]
        elif isinstance(node, ast.Delete):
            lhs = [t for target in node.targets for t in targets(target)]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("setattr", "delattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _patched_name(node.args[1].value)
            and not (isinstance(node.args[0], ast.Name) and node.args[0].id == "self")
        ):
            found.append(f"line {node.lineno}: {node.func.id}(…, {node.args[1].value!r})")
        for t in lhs:
            if (
                isinstance(t, ast.Attribute)
                and _patched_name(t.attr)
                and not (isinstance(t.value, ast.Name) and t.value.id == "self")
            ):
                found.append(f"line {t.lineno}: {ast.unparse(t)}")
    return found


def test_the_scan_finds_what_it_looks_for() -> None:
    assert patches_in("vae._easel_switch = s") == ["line 1: vae._easel_switch"]
    assert len(patches_in("vae.decode, vae.encode = a, b")) == 2
    assert len(patches_in("setattr(tok, '_easel_comma', 1)\ndel vae.decode\nm.forward: object = f")) == 3
    assert patches_in("self._easel_state = 1\nself.forward = f\nx.weight = w\nsetattr(self, 'decode', f)") == []


def test_no_library_object_is_patched_outside_the_runtime() -> None:
    offenders = {}
    for path in sorted([*(ROOT / "webui").rglob("*.py"), *(ROOT / "extensions").rglob("*.py")]):
        if path in ALLOWED or ".venv" in path.parts:
            continue
        found = patches_in(path.read_text(encoding="utf-8"))
        if found:
            offenders[str(path.relative_to(ROOT))] = found
    assert offenders == {}


class _Vae(torch.nn.Module):
    def decode(self, z):
        return ("class", z)


def test_override_stacks_and_puts_back_exactly_what_was_there() -> None:
    vae = _Vae()
    bridge = runtime.override(vae, "decode", "a", lambda inner: lambda z: ("a", inner(z)))
    assert bridge is not None and runtime.override(vae, "decode", "a", lambda inner: inner) is None  # once per key
    with runtime.overriding(vae, "decode", "b", lambda inner: lambda z: ("b", inner(z))):
        assert vae.decode(1) == ("b", ("a", ("class", 1)))
        assert runtime.overridden(vae, "decode", "a") and runtime.overridden(vae, "decode", "b")
        with runtime.overriding(vae, "decode", "a", lambda inner: lambda z: "never"):  # already there: nothing
            assert vae.decode(1) == ("b", ("a", ("class", 1)))
    assert vae.decode(2) == ("a", ("class", 2)) and not runtime.overridden(vae, "decode", "b")
    bridge()
    assert "decode" not in vars(vae) and vae.decode(3) == ("class", 3)  # the class's method again


def test_an_error_inside_the_scope_still_puts_the_method_back() -> None:
    vae = _Vae()
    try:
        with runtime.overriding(vae, "decode", "b", lambda inner: lambda z: "b"):
            raise ValueError("boom")
    except ValueError:
        pass
    assert "decode" not in vars(vae) and vae.decode(1) == ("class", 1)
