"""Build the CLIP tokenizer files (vocab.json, merges.txt) offline from the BPE list in the clip-anytorch wheel.

The hub is unreachable here, so the tokenizer that SD checkpoints need is rebuilt from OpenAI's published BPE merge
list (`bpe_simple_vocab_16e6.txt.gz`). The vocabulary layout is the one OpenAI's CLIP defines: the 256 byte symbols,
the same with the end-of-word marker, one entry per merge, then the two special tokens, 49,408 in all.
The output is committed under webui/models/configs/clip-bpe/, so the application itself never needs clip-anytorch.

    python tools/build_clip_tokenizer.py [out_dir]
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import sys
from pathlib import Path

N_MERGES = 49152 - 256 - 2  # OpenAI CLIP keeps this many merges of the list


def _byte_symbols() -> list[str]:
    """The reversible byte → printable-unicode table used by GPT-2 and CLIP BPE."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    # The vocabulary lists the symbols in this table's order (printable bytes first), not by byte value.
    return [chr(c) for c in codes]


def find_bpe_file() -> Path:
    spec = importlib.util.find_spec("clip")  # locate the package without importing it (it would import torchvision)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("clip-anytorch is not installed (pip install --no-deps clip-anytorch)")
    return Path(list(spec.submodule_search_locations)[0]) / "bpe_simple_vocab_16e6.txt.gz"


def build(out_dir: Path, bpe_path: Path | None = None) -> None:
    bpe_path = bpe_path or find_bpe_file()
    lines = gzip.open(bpe_path).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : N_MERGES + 1]]
    symbols = _byte_symbols()
    vocab = (
        symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "vocab.json").write_text(
        json.dumps({tok: i for i, tok in enumerate(vocab)}, ensure_ascii=False), encoding="utf-8"
    )
    (out_dir / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n", encoding="utf-8"
    )


if __name__ == "__main__":
    default = Path(__file__).resolve().parent.parent / "webui" / "models" / "configs" / "clip-bpe"
    build(Path(sys.argv[1]) if len(sys.argv) > 1 else default)
    print("wrote", sys.argv[1] if len(sys.argv) > 1 else default)
