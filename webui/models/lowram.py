"""`--lowram` on the CPU: an SD 3/FLUX model's text encoders hold no weights between encodings.

The encoders stay in the pipeline as modules (so LoRA layers and the pipeline's own references keep working), but
their weights are emptied after loading and after every encoding, and read back from their files (the same part
files, through the same loaders) only for the time of an encoding. RAM then holds the transformer and the VAE; the
T5-XXL encoder (9 GB in fp16, 19 GB as fp32 on a CPU) is on the disk until a prompt needs it. The price is one read
of the encoder files per encoding.

Weights are swapped through each Parameter's `.data` (the Parameter objects stay, so peft's wrappers and tied
weights keep pointing at them); LoRA adapter weights (`lora_` names) are never released. Non-persistent buffers
(CLIP's position ids) are small and stay."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import threading
from typing import Any, Callable, Iterator

import torch

ENCODERS = ("text_encoder", "text_encoder_2", "text_encoder_3")


def _base_params(module: torch.nn.Module) -> Iterator[tuple[str, torch.nn.Parameter]]:
    """(name without peft's `.base_layer`, parameter) of every weight from the file: LoRA weights left out."""
    for name, p in module.named_parameters():
        if "lora_" not in name:
            yield name.replace(".base_layer", ""), p


class EncoderWeights:
    """The released text encoders of one loaded model; `reload()` builds fresh ones from their files."""

    def __init__(self, pipe: Any, reload: Callable[[], dict[str, torch.nn.Module]]):
        self.pipe, self.reload = pipe, reload
        self.lock = threading.Lock()
        self.loads = 0  # encodings that read the files (for tests and /easel/v1/system)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {n: m for n in ENCODERS if (m := getattr(self.pipe, n, None)) is not None}

    def release(self) -> None:
        for module in self.modules().values():
            for _, p in _base_params(module):
                p.data = torch.empty(0, dtype=p.dtype, device=p.device)
        gc.collect()
        trim_heap()

    @property
    def released(self) -> bool:
        return all(p.numel() == 0 for m in self.modules().values() for _, p in _base_params(m))

    def held_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for m in self.modules().values() for _, p in _base_params(m))

    @contextlib.contextmanager
    def loaded(self) -> Iterator[None]:
        """The encoders with their weights for the `with` body, released again after it (on an error too)."""
        with self.lock:
            fresh = self.reload()
            self.loads += 1
            try:
                for name, module in self.modules().items():
                    source = dict(fresh[name].named_parameters(remove_duplicate=False))
                    for key, p in _base_params(module):
                        p.data = source[key].data
                del fresh, source
                yield
            finally:
                self.release()


def trim_heap() -> None:
    """Give freed heap memory back to the OS. glibc keeps large freed blocks in its arenas, so without this the RSS
    stays where the encoders put it (measured: benchmarks/lowram.py); Python and torch offer no call for it, hence
    glibc's own malloc_trim through ctypes. A no-op elsewhere (musl, macOS, Windows)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
