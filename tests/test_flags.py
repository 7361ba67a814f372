"""webui/flags.py: A1111 flag names and defaults, folder resolution, credentials and the network-safety rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from webui import flags

REPO = Path(__file__).resolve().parent.parent


def parse(*argv: str):
    return flags.parse_args(list(argv))


def test_defaults_match_a1111() -> None:
    ns = parse()
    assert ns.port == 7860 and ns.server_name is None and ns.max_body_size == 64
    assert Path(ns.data_dir) == REPO
    assert ns.use_cpu == [] and ns.styles_file == []
    for name in (
        "exit",
        "skip_install",
        "listen",
        "share",
        "api",
        "nowebui",
        "no_half",
        "no_half_vae",
        "medvram",
        "lowvram",
        "insecure_no_auth",
        "autolaunch",
        "enable_insecure_extension_access",
        "disable_all_extensions",
        "disable_extra_extensions",
    ):
        assert getattr(ns, name) is False, name
    for name in (
        "gradio_auth",
        "gradio_auth_path",
        "api_auth",
        "ckpt",
        "ckpt_dir",
        "vae_dir",
        "lora_dir",
        "embeddings_dir",
        "models_dir",
        "extensions_dir",
        "device_id",
        "cors_allow_origins",
        "theme",
        "tls_keyfile",
        "tls_certfile",
    ):
        assert getattr(ns, name) is None, name


def test_values_are_parsed() -> None:
    ns = parse(
        "--port",
        "8000",
        "--use-cpu",
        "all",
        "sd",
        "--device-id",
        "1",
        "--styles-file",
        "a.csv",
        "--styles-file",
        "b.csv",
        "--ckpt",
        "sub/model.safetensors [abc123]",
        "--theme",
        "dark",
        "--max-body-size",
        "10",
        "--cors-allow-origins",
        "http://a.example, http://b.example",
    )
    assert (ns.port, ns.use_cpu, ns.device_id, ns.styles_file) == (8000, ["all", "sd"], 1, ["a.csv", "b.csv"])
    assert ns.ckpt == "sub/model.safetensors [abc123]" and ns.theme == "dark" and ns.max_body_size == 10
    assert flags.cors_origins(ns) == ["http://a.example", "http://b.example"]


@pytest.mark.parametrize("argv", [["--no-such-flag"], ["--port", "x"], ["--theme", "pink"], ["--use-cpu"]])
def test_bad_flags_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as e:
        flags.parse_args(argv)
    assert e.value.code == 2


def test_disable_safe_unpickle_is_refused_with_a_reason(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        parse("--disable-safe-unpickle")
    assert e.value.code == 2
    assert "weights_only" in capsys.readouterr().err
    assert "disable_safe_unpickle" not in vars(parse())


def test_commandline_args_env_is_appended() -> None:
    argv = flags.with_env_args(["--api"], {"COMMANDLINE_ARGS": '--port 9000 --ckpt "my model.safetensors"'})
    assert argv == ["--api", "--port", "9000", "--ckpt", "my model.safetensors"]
    assert flags.with_env_args(["--api"], {}) == ["--api"]


# ---------------------------------------------------------------- folders


def test_default_paths_follow_a1111_layout(tmp_path: Path) -> None:
    p = flags.resolve_paths(parse("--data-dir", str(tmp_path)))
    assert p.data_dir == tmp_path.resolve() and p.models_dir == p.data_dir / "models"
    assert p.ckpt_dir == p.models_dir / "Stable-diffusion" and p.vae_dir == p.models_dir / "VAE"
    assert p.lora_dir == p.models_dir / "Lora" and p.lycoris_dir == p.models_dir / "LyCORIS"
    assert p.controlnet_dir == p.models_dir / "ControlNet" and p.esrgan_dir == p.models_dir / "ESRGAN"
    assert p.embeddings_dir == p.data_dir / "embeddings" and p.outputs_dir == p.data_dir / "outputs"
    assert p.extensions_dir == p.data_dir / "extensions"
    assert (p.config_file, p.cache_file, p.db_file) == (
        p.data_dir / "config.json",
        p.data_dir / "cache.json",
        p.data_dir / "easel.db",
    )
    assert p.repo_dir == REPO and p.demo_dir == REPO / "models" / "Demo"
    assert p.styles_files == (p.data_dir / "styles.csv",)


def test_default_data_dir_is_the_repo() -> None:
    p = flags.resolve_paths(parse())
    assert p.data_dir == REPO and p.ckpt_dir == REPO / "models" / "Stable-diffusion"


def test_models_dir_and_specific_dirs_override(tmp_path: Path) -> None:
    ns = parse(
        "--data-dir",
        str(tmp_path / "d"),
        "--models-dir",
        str(tmp_path / "m"),
        "--ckpt-dir",
        str(tmp_path / "c"),
        "--vae-dir",
        str(tmp_path / "v"),
        "--lora-dir",
        str(tmp_path / "l"),
        "--embeddings-dir",
        str(tmp_path / "e"),
        "--extensions-dir",
        str(tmp_path / "x"),
    )
    p = flags.resolve_paths(ns)
    assert p.models_dir == tmp_path / "m" and p.ckpt_dir == tmp_path / "c" and p.vae_dir == tmp_path / "v"
    assert p.lora_dir == tmp_path / "l" and p.lycoris_dir == tmp_path / "m" / "LyCORIS"
    assert p.embeddings_dir == tmp_path / "e" and p.extensions_dir == tmp_path / "x"
    assert p.outputs_dir == tmp_path / "d" / "outputs" and p.config_file == tmp_path / "d" / "config.json"


def test_relative_dirs_resolve_against_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    p = flags.resolve_paths(parse("--data-dir", "data", "--ckpt-dir", "ckpts", "--styles-file", "s.csv"))
    assert p.data_dir == tmp_path.resolve() / "data" and p.ckpt_dir == tmp_path.resolve() / "ckpts"
    assert p.styles_files == (tmp_path.resolve() / "s.csv",)


# ---------------------------------------------------------------- credentials


@pytest.mark.parametrize(
    "text,expected",
    [
        ("u:p", [("u", "p")]),
        ("u:p,u2:p2", [("u", "p"), ("u2", "p2")]),
        ("admin:pa:ss:word", [("admin", "pa:ss:word")]),
        (" u : p , u2:p2, ", [("u", " p"), ("u2", "p2")]),
        ('"u:p"', [("u", "p")]),
        ("u:p\nv:q", [("u", "p"), ("v", "q")]),
    ],
)
def test_parse_auth(text: str, expected: list[tuple[str, str]]) -> None:
    assert flags.parse_auth(text) == expected


@pytest.mark.parametrize(
    "text,words",
    [
        ("", "no credentials"),
        (" , ", "no credentials"),
        ("justapassword", "no ':'"),
        (":secret", "empty user"),
        ("user:", "empty password"),
        ("u:p,u:q", "listed twice"),
        ("u:p,bad", "#2"),
    ],
)
def test_parse_auth_rejects_malformed(text: str, words: str) -> None:
    with pytest.raises(ValueError) as e:
        flags.parse_auth(text)
    assert words in str(e.value)


def test_parse_auth_errors_do_not_echo_secrets() -> None:
    with pytest.raises(ValueError) as e:
        flags.parse_auth("hunter2secret")
    assert "hunter2secret" not in str(e.value)


def test_auth_file_and_combined_credentials(tmp_path: Path) -> None:
    f = tmp_path / "auth.txt"
    f.write_text("a:1,b:2\n\nc:3\n", encoding="utf-8")
    assert flags.read_auth_file(f) == [("a", "1"), ("b", "2"), ("c", "3")]
    ns = parse("--gradio-auth", "z:9", "--gradio-auth-path", str(f), "--api-auth", "api:key")
    assert flags.gradio_credentials(ns) == [("z", "9"), ("a", "1"), ("b", "2"), ("c", "3")]
    assert flags.api_credentials(ns) == [("api", "key")] and flags.gradio_credentials(parse()) == []


# ---------------------------------------------------------------- network safety


@pytest.mark.parametrize(
    "argv,refused,hint",
    [
        ([], False, None),
        (["--api"], False, None),
        (["--server-name", "127.0.0.1"], False, None),
        (["--server-name", "localhost"], False, None),
        (["--server-name", "::1"], False, None),
        (["--listen", "--server-name", "127.0.0.2"], False, None),  # --server-name wins over --listen
        (["--listen"], True, "--gradio-auth"),
        (["--share"], True, "--gradio-auth"),
        (["--server-name", "0.0.0.0"], True, "--gradio-auth"),
        (["--server-name", "192.168.1.5"], True, "--gradio-auth"),
        (["--server-name", "myhost.lan"], True, "--gradio-auth"),
        (["--listen", "--gradio-auth", "u:p"], False, None),
        (["--listen", "--gradio-auth-path", "auth.txt"], False, None),
        (["--share", "--gradio-auth", "u:p"], False, None),
        (["--listen", "--api"], True, "--api-auth"),
        (["--listen", "--api", "--gradio-auth", "u:p"], True, "--api-auth"),
        (["--listen", "--api", "--api-auth", "a:b"], True, "--gradio-auth"),
        (["--listen", "--api", "--gradio-auth", "u:p", "--api-auth", "a:b"], False, None),
        (["--listen", "--nowebui"], True, "--api-auth"),
        (["--listen", "--nowebui", "--gradio-auth", "u:p"], True, "--api-auth"),
        (["--listen", "--nowebui", "--api-auth", "a:b"], False, None),
        (["--listen", "--insecure-no-auth"], False, None),
        (["--share", "--api", "--insecure-no-auth"], False, None),
    ],
)
def test_security_matrix(argv: list[str], refused: bool, hint: str | None) -> None:
    msg = flags.check_network_security(parse(*argv))
    assert (msg is not None) == refused
    if refused:
        assert hint in msg and "--insecure-no-auth" in msg


def test_exposure_and_bind_host() -> None:
    assert not flags.is_network_exposed(parse()) and flags.bind_host(parse()) == "127.0.0.1"
    assert flags.is_network_exposed(parse("--listen")) and flags.bind_host(parse("--listen")) == "0.0.0.0"
    assert flags.is_network_exposed(parse("--share"))
    assert flags.bind_host(parse("--listen", "--server-name", "10.0.0.2")) == "10.0.0.2"


def test_insecurity_warning() -> None:
    assert flags.insecurity_warning(parse()) is None
    assert flags.insecurity_warning(parse("--insecure-no-auth")) is None  # not exposed: nothing to warn about
    assert flags.insecurity_warning(parse("--listen", "--gradio-auth", "u:p")) is None
    loud = flags.insecurity_warning(parse("--listen", "--insecure-no-auth"))
    assert loud and "WARNING" in loud and "--insecure-no-auth" in loud
    ext = flags.insecurity_warning(parse("--listen", "--gradio-auth", "u:p", "--enable-insecure-extension-access"))
    assert ext and "extension" in ext


def test_validate_args(tmp_path: Path) -> None:
    assert flags.validate_args(parse()) == []
    assert any("--gradio-auth" in e for e in flags.validate_args(parse("--gradio-auth", "nocolon")))
    assert any("--api-auth" in e for e in flags.validate_args(parse("--api-auth", "a:")))
    assert any(
        "--gradio-auth-path" in e for e in flags.validate_args(parse("--gradio-auth-path", str(tmp_path / "missing")))
    )
    key = tmp_path / "key.pem"
    key.write_text("k")
    assert any("together" in e for e in flags.validate_args(parse("--tls-keyfile", str(key))))
    assert flags.validate_args(parse("--tls-keyfile", str(key), "--tls-certfile", str(key))) == []
    assert any("--port" in e for e in flags.validate_args(parse("--port", "70000")))
    assert any("--threads 0: must be 1 or more" in e for e in flags.validate_args(parse("--threads", "0")))
    assert flags.validate_args(parse("--threads", "2")) == []
    assert any("Refusing" in e for e in flags.validate_args(parse("--listen")))


def test_public_cmd_flags_hides_secrets() -> None:
    ns = parse("--listen", "--gradio-auth", "u:topsecret1", "--api-auth", "a:topsecret2", "--api")
    public = flags.public_cmd_flags(ns)
    dumped = json.dumps(public)
    assert "topsecret" not in dumped
    assert public["gradio_auth"] == "***" and public["api_auth"] == "***"
    assert public["port"] == 7860 and public["listen"] is True and set(public) == set(vars(ns))
    assert ns.gradio_auth == "u:topsecret1"  # the namespace itself is untouched
    assert flags.public_cmd_flags(parse())["gradio_auth"] is None
