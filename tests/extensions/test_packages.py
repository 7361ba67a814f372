"""Each extension folder loads as a package (webui/extensions/host.py extension_package): scripts import their helpers
relatively, every helper module is loaded once, scripts run anew for each Application, and two extensions whose
names differ only in punctuation keep their own helpers."""

from __future__ import annotations

import sys
import textwrap

from tests.extensions.conftest import write_extension

SCRIPT = """
    from ..lib import helper

    def setup(ext):
        ext.add_api_route("/which", lambda: {"helper": helper.NAME, "loads": helper.LOADS, "module": __name__})
"""


def _with_lib(folder, name: str) -> None:
    (folder / "lib").mkdir()
    (folder / "lib" / "helper.py").write_text(
        textwrap.dedent(f"""
        NAME = {name!r}
        LOADS = [1]  # one entry per execution of this module in the process: a second load would start a new list
    """)
    )


def test_scripts_import_their_lib_relatively_and_it_loads_once(make_app, serve, data_dir):
    ext_dir = data_dir / "extensions"
    for name in ("pkg-one", "pkg_one"):
        folder = write_extension(ext_dir, name, SCRIPT)
        (folder / "scripts" / "second.py").write_text(textwrap.dedent(SCRIPT.replace("/which", "/again")))
        _with_lib(folder, name)
    app = make_app("--nowebui")
    client = serve(app)
    for name in ("pkg-one", "pkg_one"):
        which, again = client.get(f"/ext/{name}/which").json(), client.get(f"/ext/{name}/again").json()
        assert which["helper"] == again["helper"] == name  # each extension its own lib, never the other's
        assert which["loads"] == again["loads"] == [1]  # the two scripts share one helper module
        assert which["module"].endswith(".scripts.main") and again["module"].endswith(".scripts.second")
    packages = {sys.modules[f"easel_ext_{n}"].__path__[0] for n in ("pkg_one", "pkg_one_2")}
    assert packages == {str((ext_dir / "pkg-one").resolve()), str((ext_dir / "pkg_one").resolve())}
    first = sys.modules[next(k for k in sys.modules if k.endswith(".scripts.main") and "pkg_one" in k)]
    helper = sys.modules[first.__name__.rsplit(".scripts.", 1)[0] + ".lib.helper"]

    app2 = make_app("--nowebui")  # another Application: its scripts run again, the helper is the same module
    client2 = serve(app2)
    assert client2.get("/ext/pkg-one/which").json()["loads"] == [1]
    assert sys.modules[first.__name__] is not first  # the script module is new
    assert sys.modules[helper.__name__] is helper


def test_controlnet_lib_is_loaded_once_as_its_package(app):
    """The built-in ControlNet's lib/ modules are its package's submodules; no by-file copy under another name."""
    assert app.extensions.records["controlnet"].active
    state = sys.modules["easel_ext_controlnet.scripts.controlnet"]
    preprocessors = state.lib("preprocessors")
    assert preprocessors is sys.modules["easel_ext_controlnet.lib.preprocessors"]
    assert preprocessors._aux() is state.lib("aux_detectors") is sys.modules["easel_ext_controlnet.lib.aux_detectors"]
    assert not [k for k in sys.modules if k.startswith("easel_ext_controlnet_lib_")]
