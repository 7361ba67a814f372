"""Write a .safetensors file tensor by tensor, so a multi-GB checkpoint never has to be in memory at once.

Why this is written by hand: `safetensors.torch.save_file` (and `serialize`) take the complete dict of tensors, so
saving a merged SDXL checkpoint with them would hold all ~7 GB of it in RAM. The format itself is simple and fixed
(https://github.com/huggingface/safetensors#format): an 8-byte little-endian header length N, N bytes of JSON
`{"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets": [begin, end]}}` (offsets relative to the
end of the header, contiguous, covering the whole data block), then the raw little-endian tensor bytes. Since the
merge knows every output tensor's name, dtype and shape before it computes any of them, the header is written
first and each tensor's bytes are appended as it is produced. What is written is read back by the library
(`safe_open`) in the tests, so the library stays the judge of the format.

The file is written to a temp file in the target folder, fsynced, then linked into place without replacing an
existing file (`os.link` fails if the name exists), so a crash or an interrupt leaves nothing under the final name.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from webui.errors import Conflict, EaselError

# torch dtype → safetensors dtype name (the ones a Stable Diffusion checkpoint can hold)
DTYPES: dict[torch.dtype, str] = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}
for _name, _tag in (("float8_e4m3fn", "F8_E4M3"), ("float8_e5m2", "F8_E5M2")):
    if hasattr(torch, _name):
        DTYPES[getattr(torch, _name)] = _tag


class FileExists(Conflict):
    """The output name is taken: a merge never replaces an existing checkpoint."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * torch.empty((), dtype=self.dtype).element_size()


def layout(specs: list[TensorSpec]) -> list[TensorSpec]:
    """The order tensors are stored in: larger elements first (then by name), so with the header padded to a
    multiple of 8 every tensor starts at a multiple of its element size (as the library lays files out)."""
    return sorted(specs, key=lambda s: (-torch.empty((), dtype=s.dtype).element_size(), s.name))


def build_header(specs: list[TensorSpec], metadata: dict[str, str]) -> bytes:
    header: dict[str, object] = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for s in specs:
        if s.dtype not in DTYPES:
            raise EaselError(f"{s.name}: dtype {s.dtype} cannot be stored in safetensors")
        header[s.name] = {"dtype": DTYPES[s.dtype], "shape": list(s.shape), "data_offsets": [offset, offset + s.nbytes]}
        offset += s.nbytes
    blob = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    blob += b" " * (-len(blob) % 8)  # the library pads with spaces to keep the data block 8-byte aligned
    return len(blob).to_bytes(8, "little") + blob


class StreamWriter:
    """`write(tensor)` the tensors (or consecutive row blocks of one tensor) in exactly `self.specs` order."""

    def __init__(self, file, specs: list[TensorSpec]):
        self._f, self.specs = file, specs
        self._index, self._written = 0, 0  # current tensor, bytes of it written so far

    def write(self, block: torch.Tensor) -> None:
        if self._index >= len(self.specs):
            raise EaselError("more tensor data than the header announced")
        spec = self.specs[self._index]
        if block.dtype != spec.dtype:
            raise EaselError(f"{spec.name}: got {block.dtype}, the header says {spec.dtype}")
        data = block.detach().to("cpu").contiguous()
        raw = data.reshape(-1).view(torch.uint8) if data.numel() else torch.empty(0, dtype=torch.uint8)
        if sys.byteorder != "little" and data.element_size() > 1:
            raise EaselError("writing safetensors on a big-endian machine is not supported")
        self._f.write(memoryview(raw.numpy()))
        self._written += raw.numel()
        if self._written > spec.nbytes:
            raise EaselError(f"{spec.name}: more bytes than its shape {spec.shape} holds")
        if self._written == spec.nbytes:
            self._index, self._written = self._index + 1, 0
            self._skip_empty()

    def _skip_empty(self) -> None:
        while self._index < len(self.specs) and self.specs[self._index].nbytes == 0:
            self._index += 1

    @property
    def current(self) -> TensorSpec | None:
        return self.specs[self._index] if self._index < len(self.specs) else None

    def check_complete(self) -> None:
        self._skip_empty()
        if self._index != len(self.specs):
            raise EaselError(f"the merge stopped before {self.specs[self._index].name}: the file is incomplete")


@contextlib.contextmanager
def stream_safetensors(path: Path, specs: list[TensorSpec], metadata: dict[str, str]) -> Iterator[StreamWriter]:
    """Yield a StreamWriter for a new file at `path` with these tensors (stored in `layout` order: the caller
    writes `writer.specs` in that order). On success the file appears under `path`; if `path` exists by then,
    FileExists is raised and nothing is replaced. On any error the temp file is removed."""
    path = Path(path)
    specs = layout(specs)
    header = build_header(specs, metadata)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp_path = Path(tmp)
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as f:
            f.write(header)
            writer = StreamWriter(f, specs)
            writer._skip_empty()
            yield writer
            writer.check_complete()
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; a checkpoint gets the usual permissions
        _place(tmp_path, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


def _place(tmp: Path, path: Path) -> None:
    """Give the finished temp file its final name without ever replacing a file that has that name."""
    try:
        os.link(tmp, path)  # atomic, and fails when the name is taken (os.replace would overwrite)
    except FileExistsError:
        raise FileExists(f"{path.name} already exists in the checkpoint folder: choose another name") from None
    except OSError:  # a file system without hard links: check, then rename (a tiny race, never a partial file)
        if path.exists():
            raise FileExists(f"{path.name} already exists in the checkpoint folder: choose another name") from None
        os.replace(tmp, path)
