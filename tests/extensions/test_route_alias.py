"""`route_alias` in extension.toml: one lower-case segment, never one of Easel's own prefixes, first come first
served."""

from __future__ import annotations

from types import SimpleNamespace

from webui.api.extensions import route_aliases


def host_with(*manifests):
    recs = [SimpleNamespace(name=f"ext{i}", manifest=m) for i, m in enumerate(manifests)]
    return SimpleNamespace(active=lambda: recs)


def test_aliases_are_checked():
    host = host_with(
        {"route_alias": "/controlnet"},
        {"route_alias": "/sdapi"},
        {"route_alias": "/controlnet"},
        {"route_alias": "/Two/Parts"},
        {},
        {"route_alias": "tagger"},
    )
    assert route_aliases(host) == {"ext0": "/controlnet", "ext5": "/tagger"}
    assert route_aliases(None) == {}
