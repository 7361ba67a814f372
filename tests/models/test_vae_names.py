"""Unknown VAE names in a request's override_settings (`sd_vae`, `forge_additional_modules`) and in POST
/sdapi/v1/options are a 422 that says where VAEs are looked for, before anything is queued or saved; "Automatic",
"None" and every name /sdapi/v1/sd-vae lists (with or without its extension) keep working."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.models.test_module_vae import data_dir, gen  # noqa: F401 (data_dir: a fixture)

pytestmark = pytest.mark.filterwarnings("ignore")
HOSTILE = [
    "nope.safetensors",
    "../x.safetensors",
    "../VAE/other-vae.safetensors",
    "/etc/passwd",
    "C:\\x.pt",
    "x" * 10_000,
]


def _post_raw(client, route: str, body: str):
    return client.post(route, content=body, headers={"content-type": "application/json"})


def test_every_listed_name_automatic_and_none_work(client):
    listed = [v["model_name"] for v in client.get("/sdapi/v1/sd-vae").json()]
    assert "other-vae.safetensors" in listed
    plain, _ = gen(client, "tiny-a")
    by_file, text = gen(client, "tiny-a", sd_vae="other-vae.safetensors")
    assert "VAE: other-vae.safetensors" in text and not np.array_equal(plain, by_file)
    assert np.array_equal(by_file, gen(client, "tiny-a", sd_vae="other-vae")[0])  # without the extension too
    for choice in ("Automatic", "None"):
        assert np.array_equal(plain, gen(client, "tiny-a", sd_vae=choice)[0])
    for name in listed:
        r = client.post("/sdapi/v1/options", json={"sd_vae": name})
        if name == "ae.safetensors":  # FLUX's VAE: a known name, refused only because it doesn't fit tiny-a
            assert r.status_code == 400 and "not a VAE" in r.json()["detail"], r.text
        else:
            assert r.status_code == 200, (name, r.text)
    assert client.post("/sdapi/v1/options", json={"sd_vae": "Automatic"}).status_code == 200


@pytest.mark.parametrize("value", HOSTILE, ids=lambda v: v[:20] + f"({len(v)})")
def test_unknown_vae_names_are_refused_with_where_vaes_are(client, value):
    detail, _ = gen(client, "tiny-a", 422, sd_vae=value)
    if len(value) > 4096:  # every text option: refused by the one option check before the name is looked up
        assert detail == "option sd_vae: text longer than 4096 characters or with a NUL character"
    else:
        assert "option sd_vae: no VAE named" in detail and "/VAE" in detail and "other-vae.safetensors" in detail
    assert len(detail) < 2000
    if value.startswith("../VAE/"):  # Forge sends paths: only the file name counts, never the path
        assert np.array_equal(
            gen(client, "tiny-a", forge_additional_modules=[value])[0], gen(client, "tiny-a", sd_vae="other-vae")[0]
        )
    else:
        detail, _ = gen(client, "tiny-a", 422, forge_additional_modules=[value])
        if len(value) > 4096:
            assert detail == "option forge_additional_modules: at most 256 items of 4096 characters"
        else:
            assert "option forge_additional_modules: no such .safetensors file in models/VAE/" in detail
    before = client.get("/sdapi/v1/options").json()["sd_vae"]
    r = client.post("/sdapi/v1/options", json={"sd_vae": value})
    assert r.status_code == 422 and "option sd_vae" in r.json()["detail"], r.text[:300]
    assert client.get("/sdapi/v1/options").json()["sd_vae"] == before


def test_values_that_are_not_names_are_refused(client, data_dir):  # noqa: F811
    config = data_dir / "config.json"
    saved = config.read_text() if config.exists() else None
    bodies = ['{"sd_vae": NaN}', '{"sd_vae": Infinity}', '{"sd_vae": 1e9}', '{"sd_vae": null}']
    bodies += ['{"forge_additional_modules": [NaN]}', '{"forge_additional_modules": [1]}']
    for body in bodies:
        r = _post_raw(client, "/sdapi/v1/options", body)
        assert r.status_code == 422 and isinstance(r.json(), dict), (body, r.text)
        overrides = json.loads(body.replace("NaN", '"x"').replace("Infinity", '"x"'))
        payload = json.dumps({"prompt": "a", "steps": 1, "width": 64, "height": 64, "override_settings": overrides})
        for bad in ("NaN", "Infinity"):  # the same values inside override_settings
            payload = payload.replace('"x"', bad) if bad in body else payload
        r = _post_raw(client, "/sdapi/v1/txt2img", payload)
        assert r.status_code == 422 and isinstance(r.json(), dict), (payload, r.text)
    assert (config.read_text() if config.exists() else None) == saved
