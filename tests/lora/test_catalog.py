"""The LoRA catalog: recursive scan of Lora/ and LyCORIS/, A1111's list shape, metadata, previews, hashes, errors."""

from __future__ import annotations

import json

import torch

from tests.lora.factory import random_adapter, write_kohya, write_loha
from webui.lora.catalog import LoraCatalog
from webui.models.hashing import HashCache, addnet_hash, sha256_file


def test_scan_shape_metadata_preview_and_errors(tmp_path):
    lora, lyco = tmp_path / "Lora", tmp_path / "LyCORIS"
    meta = {"ss_output_name": "Pretty Name", "ss_network_dim": 4, "ss_tag_frequency": {"1_x": {"cat": 3}}}
    a = write_kohya(lora / "a.safetensors", seed=1, metadata=meta)
    write_kohya(lora / "deep" / "er" / "b.safetensors", seed=2)
    (lora / "a.preview.png").write_bytes(b"\x89PNG")
    (lora / "deep" / "er" / "b.png").write_bytes(b"\x89PNG")
    (lora / "broken.safetensors").write_bytes(b"garbage, not safetensors")
    (lora / "notes.txt").write_text("ignored")
    (lora / ".a.safetensors.123.tmp").write_bytes(b"")  # an atomic write in progress
    lyco.mkdir()
    write_loha(lyco / "hada.safetensors")
    unet_sd, _ = random_adapter(3, text_encoder=False)
    torch.save({f"unet.{k}": v for k, v in unet_sd.items()}, lyco / "old.pt")

    cat = LoraCatalog([lora, lyco], HashCache(tmp_path / "cache.json"))
    items = {e.name: e for e in cat.refresh()}
    assert sorted(items) == ["a", "b", "broken", "hada", "old"]
    api = items["a"].to_api()
    assert {k: api[k] for k in ("name", "alias", "path")} == {"name": "a", "alias": "Pretty Name", "path": str(a)}
    assert api["metadata"]["ss_tag_frequency"] == {"1_x": {"cat": 3}} and api["metadata"]["ss_network_dim"] == "4"
    assert items["a"].preview == lora / "a.preview.png" and items["b"].preview.name == "b.png"
    assert items["a"].format == "kohya" and items["a"].error is None and items["b"].rel == "deep/er/b"
    assert items["broken"].error and items["hada"].format == "loha" and "LoHa" in items["hada"].error
    assert items["old"].format == "peft" and items["old"].error is None
    assert cat.find("Pretty Name") is items["a"] and cat.find("deep/er/b") is items["b"] and cat.find("zz") is None

    assert cat.shorthash(items["a"]) == addnet_hash(a)[:12]
    assert cat.shorthash(items["old"]) == sha256_file(lyco / "old.pt")[:12]
    cached = json.loads((tmp_path / "cache.json").read_text())
    assert cached["hashes-addnet"]["lora/a"]["sha256"] == addnet_hash(a)

    reads = cat.header_reads
    cat.refresh()
    assert cat.header_reads == reads  # unchanged files are not read again
