"""Install, restart, route, hooks, enable/disable, update, uninstall, and the network lock: through a real git
repository made in the test and the HTTP API."""

from __future__ import annotations

import json

from tests.extensions.conftest import (
    EXAMPLE,
    commit_all,
    extension_item,
    git,
    git_repo,
    pixels,
    txt2img,
    write_extension,
)

MAGENTA = (255, 0, 255)


def test_install_restart_route_hook_disable_and_enabled_set_survives(make_app, serve, tmp_path):
    url = git_repo(EXAMPLE, tmp_path / "src" / "example-frame")
    app = make_app("--nowebui")
    client = serve(app)
    r = client.post("/easel/v1/extensions/install", json={"url": url})
    assert r.status_code == 200, r.text
    item = r.json()
    assert item["name"] == "example-frame" and item["version"] == "1.0.0" and item["status"] == "restart to load"
    assert item["remote"] == url and item["branch"] == "main" and len(item["commit_hash"]) == 40
    assert isinstance(item["commit_date"], int) and item["enabled"] is True and item["builtin"] is False
    assert (app.paths.extensions_dir / "example-frame" / "extension.toml").is_file()
    assert client.get("/ext/example-frame/status").status_code == 404  # it loads at the next start
    again = client.post("/easel/v1/extensions/install", json={"url": url})
    assert again.status_code == 409

    app.stop()  # restart: a new Application on the same data dir
    app = make_app("--nowebui")
    client = serve(app)
    assert extension_item(client, "example-frame")["status"] == "ok"
    status = client.get("/ext/example-frame/status")
    assert status.status_code == 200 and status.json()["frame_color"] == "#ff00ff"
    images, info = txt2img(client, steps=3)
    assert tuple(pixels(images[0])[0, 0]) == MAGENTA  # after_image framed it
    seen = client.get("/ext/example-frame/status").json()
    assert seen["images_framed"] == 1 and seen["last_steps"] == [1, 2, 3] and seen["last_total"] == 3

    r = client.post("/easel/v1/extensions/example-frame/disable")
    assert r.status_code == 200 and r.json()["enabled"] is False and r.json()["status"] == "disabled"
    plain, _ = txt2img(client, steps=3)  # disabling stops its hooks at once
    assert tuple(pixels(plain[0])[0, 0]) != MAGENTA
    assert (pixels(plain[0])[2:-2, 2:-2] == pixels(images[0])[2:-2, 2:-2]).all()  # the same image, unframed
    assert client.get("/ext/example-frame/status").status_code == 404

    app.stop()
    app = make_app("--nowebui")
    client = serve(app)
    assert app.options.get("disabled_extensions") == ["example-frame"]
    item = extension_item(client, "example-frame")
    assert item["enabled"] is False and item["status"] == "disabled"
    assert client.get("/ext/example-frame/status").status_code == 404
    again, _ = txt2img(client, steps=3)
    assert tuple(pixels(again[0])[0, 0]) != MAGENTA
    assert json.loads((app.paths.config_file).read_text())["disabled_extensions"] == ["example-frame"]

    assert client.post("/easel/v1/extensions/example-frame/enable").json()["status"] == "restart to load"
    app.stop()
    app = make_app("--nowebui")
    assert app.extensions.records["example-frame"].active and app.options.get("disabled_extensions") == []


def test_failed_installs_leave_nothing_behind(make_app, serve, tmp_path):
    app = make_app("--nowebui", start=False)
    client = serve(app)
    ext_dir = app.paths.extensions_dir

    def leftovers():
        return sorted(p.name for p in ext_dir.iterdir()) if ext_dir.exists() else []

    missing = client.post("/easel/v1/extensions/install", json={"url": (tmp_path / "nope").as_uri()})
    assert missing.status_code == 400 and "git clone failed" in missing.json()["detail"]
    not_ext = tmp_path / "not-an-extension"
    not_ext.mkdir()
    (not_ext / "README.md").write_text("hello")
    r = client.post("/easel/v1/extensions/install", json={"url": git_repo(not_ext, tmp_path / "src" / "plain")})
    assert r.status_code == 400 and "no extension.toml" in r.json()["detail"]
    bad_req = write_extension(
        tmp_path / "w",
        "needs-missing",
        "def setup(ext):\n    pass\n",
        manifest='requires = ["easel-no-such-package-xyz==9.9.9"]\n',
    )
    app.extension_manager.pip_args = ["--no-index", "--quiet"]  # fail fast, offline
    r = client.post("/easel/v1/extensions/install", json={"url": git_repo(bad_req, tmp_path / "src" / "needs")})
    assert r.status_code == 400 and "installing requirements" in r.json()["detail"]
    wrong_api = write_extension(tmp_path / "w", "future", "", manifest="")
    (wrong_api / "extension.toml").write_text('name = "future"\nversion = "1"\napi = 2\n')
    r = client.post("/easel/v1/extensions/install", json={"url": git_repo(wrong_api, tmp_path / "src" / "future")})
    assert r.status_code == 400 and "API 2" in r.json()["detail"]
    assert client.post("/easel/v1/extensions/install", json={"url": "--upload-pack=touch /tmp/x"}).status_code == 422
    assert leftovers() == []
    assert {e["name"] for e in client.get("/sdapi/v1/extensions").json()} == {
        "xyz_grid",
        "prompts_from_file",
        "controlnet",
        "adetailer",
        "ip_adapter",
    }


def test_requires_installed_with_pip_then_branch_and_folder_name(make_app, serve, tmp_path):
    src = write_extension(
        tmp_path / "w", "with-reqs", "def setup(ext):\n    pass\n", manifest='requires = ["pillow"]\n'
    )
    repo = tmp_path / "src" / "with-reqs"
    git_repo(src, repo)
    git("checkout", "-q", "-b", "dev", cwd=repo)
    (repo / "extension.toml").write_text(
        (repo / "extension.toml").read_text().replace('version = "0.1.0"', 'version = "0.2.0-dev"')
    )
    commit_all(repo, "dev version")
    git("checkout", "-q", "main", cwd=repo)
    app = make_app("--nowebui", start=False)
    client = serve(app)
    app.extension_manager.pip_args = ["--no-index", "--quiet"]  # pillow is already installed: no network needed
    r = client.post("/easel/v1/extensions/install", json={"url": str(repo), "branch": "dev", "name": "reqs-dev"})
    assert r.status_code == 200, r.text
    assert r.json()["branch"] == "dev" and r.json()["version"] == "0.2.0-dev"
    assert (app.paths.extensions_dir / "reqs-dev" / "extension.toml").is_file()


def test_check_update_fast_forward_refuse_diverged_and_uninstall(make_app, serve, tmp_path):
    src = write_extension(tmp_path / "w", "updatable", "def setup(ext):\n    pass\n")
    repo = tmp_path / "src" / "updatable"
    url = git_repo(src, repo)
    app = make_app("--nowebui", start=False)
    client = serve(app)
    first = client.post("/easel/v1/extensions/install", json={"url": url}).json()["commit_hash"]
    assert client.post("/easel/v1/extensions/check-updates").json() == {"updatable": "up to date"}
    (repo / "NEWS").write_text("v2\n")
    second = commit_all(repo, "second")
    assert client.post("/easel/v1/extensions/check-updates").json()["updatable"].startswith("update available (1")
    r = client.post("/easel/v1/extensions/updatable/update")
    assert r.status_code == 200 and r.json()["commit_hash"] == second != first
    assert "restart" in r.json()["update"]

    installed = app.paths.extensions_dir / "updatable"
    (installed / "LOCAL").write_text("mine\n")
    commit_all(installed, "a local commit")
    (repo / "NEWS").write_text("v3\n")
    commit_all(repo, "third")
    assert client.post("/easel/v1/extensions/check-updates").json()["updatable"].startswith("diverged")
    refused = client.post("/easel/v1/extensions/updatable/update")
    assert refused.status_code == 400 and "fast-forward" in refused.json()["detail"]
    assert extension_item(client, "updatable")["commit_hash"] == git("rev-parse", "HEAD", cwd=installed)

    assert client.delete("/easel/v1/extensions/xyz_grid").status_code == 422  # built in: disable it instead
    assert client.delete("/easel/v1/extensions/updatable").json() == {"uninstalled": "updatable"}
    assert not installed.exists() and list(app.paths.extensions_dir.iterdir()) == []
    assert "updatable" not in {e["name"] for e in client.get("/sdapi/v1/extensions").json()}
    assert client.delete("/easel/v1/extensions/updatable").status_code == 404


def test_extension_changes_refused_with_403_when_exposed(make_app, serve, tmp_path):
    url = git_repo(EXAMPLE, tmp_path / "src" / "example-frame")
    app = make_app("--listen", "--gradio-auth", "u:p", "--nowebui", start=False)
    client = serve(app)
    r = client.post("/easel/v1/extensions/install", json={"url": url})
    assert r.status_code == 403 and "--enable-insecure-extension-access" in r.json()["detail"]
    for method, path in (
        ("post", "/easel/v1/extensions/xyz_grid/disable"),
        ("post", "/easel/v1/extensions/xyz_grid/enable"),
        ("post", "/easel/v1/extensions/xyz_grid/update"),
        ("delete", "/easel/v1/extensions/xyz_grid"),
    ):
        assert getattr(client, method)(path).status_code == 403, path
    assert not app.paths.extensions_dir.exists() or list(app.paths.extensions_dir.iterdir()) == []
    assert client.get("/sdapi/v1/extensions").status_code == 200  # listing stays open

    allowed = make_app(
        "--listen", "--gradio-auth", "u:p", "--enable-insecure-extension-access", "--nowebui", start=False
    )
    from webui.extensions.manager import manager_for

    assert manager_for(allowed).locked_reason is None and manager_for(app).locked_reason


def test_available_index_and_plain_errors(make_app, serve, tmp_path):
    app = make_app("--nowebui", start=False)
    client = serve(app)
    r = client.get("/easel/v1/extensions/available")
    assert r.status_code == 409 and "No extension index is set" in r.json()["detail"]
    app.options.set({"extensions_index_url": str(tmp_path / "missing.json")})
    r = client.get("/easel/v1/extensions/available")
    assert r.status_code == 502 and "can't be reached" in r.json()["detail"]
    index = tmp_path / "index.json"
    index.write_text(
        json.dumps(
            {
                "extensions": [
                    {"name": "Frame", "url": "https://example.com/a/frame.git", "description": "frames", "tags": ["x"]},
                    {"url": "https://example.com/b/other"},
                    {"name": "no url"},
                ]
            }
        )
    )
    app.options.set({"extensions_index_url": index.as_uri()})
    entries = client.get("/easel/v1/extensions/available").json()["extensions"]
    assert [(e["name"], e["installed"]) for e in entries] == [("Frame", False), ("other", False)]
