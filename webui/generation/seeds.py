"""Seeds → initial noise, drawn on the CPU so a seed gives the same image on any device (A1111's "CPU" RNG)."""

from __future__ import annotations

import random

import torch


def random_seed() -> int:
    return int(random.randrange(4294967294))


def fix_seed(seed: int | None) -> int:
    return random_seed() if seed is None or int(seed) == -1 else int(seed)


def slerp(t: float, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between two noise tensors (variation seeds)."""
    an, bn = a / a.norm(), b / b.norm()
    dot = (an * bn).sum().clamp(-1.0, 1.0)
    if dot.abs() > 0.9995:
        return (1 - t) * a + t * b
    omega = torch.acos(dot)
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b


def _randn(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.randn(
        shape, generator=torch.Generator("cpu").manual_seed(int(seed) & 0xFFFFFFFFFFFFFFFF), dtype=torch.float32
    )


def image_noise(
    seed: int,
    shape: tuple[int, int, int],
    *,
    subseed: int | None = None,
    subseed_strength: float = 0.0,
    resize_from: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Noise of `shape` (C, H, W). With `resize_from` (latent H, W), the noise is drawn at that size and its centre
    is placed into the target, so a seed keeps its composition across sizes (A1111's "resize seed from")."""
    c, h, w = shape
    src = (c, resize_from[0], resize_from[1]) if resize_from else shape
    noise = _randn(seed, src)
    if subseed is not None and subseed_strength > 0:
        noise = slerp(subseed_strength, noise, _randn(subseed, src))
    if src == shape:
        return noise
    base = _randn(seed, shape)
    dx, dy = (w - src[2]) // 2, (h - src[1]) // 2
    tw, th = min(w, src[2]), min(h, src[1])
    tx, ty = max(dx, 0), max(dy, 0)
    sx, sy = max(-dx, 0), max(-dy, 0)
    base[:, ty : ty + th, tx : tx + tw] = noise[:, sy : sy + th, sx : sx + tw]
    return base


def batch_noise(
    seeds: list[int],
    subseeds: list[int],
    subseed_strength: float,
    shape: tuple[int, int, int],
    resize_from: tuple[int, int] | None = None,
) -> torch.Tensor:
    return torch.stack(
        [
            image_noise(s, shape, subseed=ss, subseed_strength=subseed_strength, resize_from=resize_from)
            for s, ss in zip(seeds, subseeds)
        ]
    )
