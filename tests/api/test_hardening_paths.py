"""Issue #16 item 7: when the server is reachable from the network, a remote user can neither read nor write outside
the data and models dirs. Path options are read-only (unless --allow-path-options, and then confined), training
datasets and batch folders must be inside the data dir, and checkpoint errors don't tell whether a file exists.
On loopback, A1111's freedom stays."""

from __future__ import annotations

import pytest

from tests.api.test_hardening_options import EXPOSED, serve_app  # noqa: F401  (fixture)
from webui.pathguard import PathOutside, confine


def test_confine_catches_dotdot_absolute_and_symlink_escapes(tmp_path):
    root, outside = tmp_path / "data", tmp_path / "elsewhere"
    (root / "outputs" / "a").mkdir(parents=True)
    outside.mkdir()
    (root / "escape").symlink_to(outside)  # a link inside that leads out
    (root / "inner").symlink_to(root / "outputs")  # a link inside that stays in
    assert confine("outputs/a", [root]) == (root / "outputs" / "a").resolve()
    assert confine(str(root / "outputs"), [root]) == (root / "outputs").resolve()
    assert confine("inner/a", [root]) == (root / "outputs" / "a").resolve()
    assert confine("not/yet/made", [root]) == (root / "not" / "yet" / "made").resolve()  # may not exist yet
    assert confine("x", [root, outside], base=outside) == outside.resolve() / "x"
    for bad in (
        "../elsewhere",
        "outputs/../../elsewhere",
        str(outside),
        "/etc",
        "/",
        "escape",
        "escape/x",
        "~",
        "",
        "a\x00b",
        str(root) + "/../elsewhere",
    ):
        with pytest.raises(PathOutside):
            confine(bad, [root])
    messages = set()
    for bad in ("/etc/passwd", "/no/such/file"):  # existing or not: the same words
        with pytest.raises(PathOutside) as e:
            confine(bad, [root], what="thing")
        messages.add(e.value.message.replace(repr(bad), "X"))
    assert len(messages) == 1


PATH_KEYS = (
    "outdir_txt2img_samples",
    "outdir_samples",
    "outdir_grids",
    "outdir_extras_samples",
    "control_net_models_path",
)


def test_path_options_are_read_only_when_exposed(serve_app, tmp_path):
    c = serve_app(*EXPOSED)
    app = c.application
    config = app.paths.config_file
    before = config.read_bytes() if config.exists() else None
    for key in PATH_KEYS:
        for value in (str(tmp_path / "x"), "../x", "outputs/inside"):
            r = c.post("/sdapi/v1/options", json={key: value})
            assert r.status_code == 403 and "--allow-path-options" in r.json()["detail"], (key, value, r.text)
    gen = {
        "prompt": "x",
        "steps": 1,
        "width": 64,
        "height": 64,
        "override_settings": {"outdir_txt2img_samples": str(tmp_path / "x")},
        "override_settings_restore_afterwards": False,
    }
    assert c.post("/sdapi/v1/txt2img", json=gen).status_code == 403
    assert c.post("/easel/v1/jobs", json={"kind": "txt2img", "params": gen}).status_code == 403
    assert (config.read_bytes() if config.exists() else None) == before
    assert not (tmp_path / "x").exists()
    # an A1111 client that reads every option and posts them all back is not refused for the unchanged paths
    assert (
        c.post("/sdapi/v1/options", json={**c.get("/sdapi/v1/options").json(), "jpeg_quality": 70}).status_code == 200
    )


def test_allow_path_options_confines_them_to_the_data_and_models_dirs(serve_app, data_dir, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    c = serve_app(*EXPOSED, "--allow-path-options")
    (data_dir / "link-out").symlink_to(outside)
    for key in PATH_KEYS:
        for value in (str(outside), "../x", "../../etc", "/etc", "link-out", "link-out/sub", "outputs/../../x"):
            r = c.post("/sdapi/v1/options", json={key: value})
            assert r.status_code == 403, (key, value, r.text)
            assert "inside the data or models folder" in r.json()["detail"]
    ok = {
        "outdir_txt2img_samples": "outputs/mine",
        "outdir_grids": str(data_dir / "grids"),
        "control_net_models_path": str(data_dir / "models" / "ControlNet"),
    }
    assert c.post("/sdapi/v1/options", json=ok).status_code == 200
    assert c.get("/sdapi/v1/options").json()["outdir_txt2img_samples"] == "outputs/mine"


def test_loopback_keeps_a1111s_freedom(serve_app, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    c = serve_app("--api", "--nowebui")
    r = c.post(
        "/sdapi/v1/options", json={"outdir_txt2img_samples": str(elsewhere), "control_net_models_path": str(elsewhere)}
    )
    assert r.status_code == 200, r.text


def _train(c, folder):
    c.application.models.refresh()  # the checkpoint list (a started app has it)
    return c.post("/easel/v1/train/lora", json={"name": "t", "dataset_dir": str(folder), "steps": 1})


def test_training_dataset_is_confined_to_the_data_dir_when_exposed(serve_app, data_dir, tmp_path_factory):
    outside = tmp_path_factory.mktemp("dataset-outside")
    (outside / "secret-name.bin").write_bytes(b"x")
    (data_dir / "training" / "datasets" / "empty").mkdir(parents=True)
    (data_dir / "sneaky").symlink_to(outside)

    loopback = serve_app("--api", "--nowebui")
    r = _train(loopback, outside)
    assert r.status_code == 422 and "secret-name.bin" in r.json()["detail"]  # on loopback it is read

    c = serve_app(*EXPOSED)
    details = []
    for folder in (outside, "/etc", "/", "../", str(data_dir / ".." / outside.name), "sneaky", "~", "/no/such/folder"):
        r = _train(c, folder)
        assert r.status_code == 422, (folder, r.text)
        detail = r.json()["detail"]
        assert "secret-name.bin" not in r.text and "passwd" not in r.text and "not images" not in detail
        details.append(detail.replace(repr(str(folder)), "X"))
    assert len(set(details)) == 1, set(details)  # existing or not, outside reads the same
    r = _train(c, "training/datasets/empty")  # inside the data dir: looked at
    assert r.status_code == 422 and "no images" in r.json()["detail"]


def test_batch_folders_are_confined_when_exposed(make_app, tmp_path_factory):
    from webui.errors import InvalidRequest
    from webui.generation.requests import Img2ImgRequest

    outside = tmp_path_factory.mktemp("batch-outside")
    app = make_app(*EXPOSED, start=False)
    for src, dst in ((str(outside), "outputs/b"), ("outputs", str(outside / "w")), ("outputs", "../w")):
        with pytest.raises(InvalidRequest) as e:
            app.submit_img2img_batch(Img2ImgRequest(prompt="x"), input_dir=src, output_dir=dst)
        assert "inside the data or models folder" in e.value.message
    assert not (outside / "w").exists()


@pytest.mark.parametrize("exposed", [False, True])
def test_checkpoint_errors_do_not_reveal_whether_a_file_exists(serve_app, exposed, tmp_path_factory):
    real = tmp_path_factory.mktemp("real") / "real.safetensors"
    real.write_bytes(b"not really")
    c = serve_app(*(EXPOSED if exposed else ("--api", "--nowebui")), start=True)
    answers = []
    for name in (str(real), "/etc/passwd", "/no/such/file.safetensors", "../../../../etc/passwd"):
        r = c.post("/sdapi/v1/options", json={"sd_model_checkpoint": name})
        answers.append((r.status_code, r.json()["detail"].replace(repr(name), "X")))
        gen = {"prompt": "x", "steps": 1, "width": 64, "height": 64, "override_settings": {"sd_model_checkpoint": name}}
        r = c.post("/sdapi/v1/txt2img", json=gen)
        answers.append((r.status_code, r.json()["detail"].replace(repr(name), "X")))
    assert len(set(answers[0::2])) == 1 and len(set(answers[1::2])) == 1, answers
    assert all(400 <= s < 500 for s, _ in answers)
    assert "outside" not in str(answers)
    listed = c.application.catalog.list()[0].path  # a listed checkpoint still resolves by its path
    assert c.application.catalog.find(str(listed)).path == listed
