"""The CLIP tokenizer, built offline from files shipped in the repo (see tools/build_clip_tokenizer.py)."""

from __future__ import annotations

from pathlib import Path

from webui.fsutil import ensure_file

CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
BPE_DIR = CONFIGS_DIR / "clip-bpe"


def write_tokenizer_folder(dest: Path, template: Path) -> Path:
    """Fill `dest` with a complete CLIPTokenizer folder: the family's tokenizer_config.json and
    special_tokens_map.json (they differ in the pad token: SD1.x pads with EOS, SD2.x with "!"), plus the BPE files.
    Every file is checked against its source and rewritten atomically when missing, truncated or different."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        if (template / name).exists():
            ensure_file(dest / name, (template / name).read_bytes())
    for name in ("vocab.json", "merges.txt"):
        ensure_file(dest / name, source=BPE_DIR / name)
    return dest


def load_clip_tokenizer(family_template: str = "sd15/tokenizer", cache_dir: Path | None = None):
    """A real CLIPTokenizer with model_max_length 77, loaded through `from_pretrained(dir)`.
    (transformers 5 gives a silently broken tokenizer with `vocab_file=`, so the folder route is used.)"""
    from transformers import CLIPTokenizer
    import tempfile

    folder = Path(cache_dir) if cache_dir else Path(tempfile.mkdtemp(prefix="easel-tok-"))
    write_tokenizer_folder(folder, CONFIGS_DIR / family_template)
    return CLIPTokenizer.from_pretrained(str(folder), model_max_length=77, local_files_only=True)
