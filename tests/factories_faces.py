"""Face restoration and detector models written locally: a random-weight GFPGAN in spandrel's state-dict layout
(GFPGANv1Clean, the layout of GFPGANv1.3/1.4.pth) and tiny YOLOv8-shaped ONNX detectors."""

from __future__ import annotations

import io
from pathlib import Path

import torch

INPUT = 640  # the detector input size webui/faces/detect.py feeds
CELL = 80  # one anchor per 80×80 cell of the input: an 8×8 grid


class _GridDetector(torch.nn.Module):
    """YOLOv8's output layout [1, 4 + 1 class, anchors] with one anchor per grid cell (box = the cell). Its score is
    high on red cells ("red"), or on one fixed cell whatever the image ("fixed", for generated images)."""

    def __init__(self, mode: str, cell: int):
        super().__init__()
        n = INPUT // CELL
        ys, xs = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
        centres = (torch.stack([xs.flatten(), ys.flatten()]).float() + 0.5) * CELL
        self.register_buffer("boxes", torch.cat([centres, torch.full((2, n * n), float(CELL))])[None])
        bias = torch.full((1, 1, n * n), -30.0)
        bias[0, 0, cell] = 3.0  # score 0.95: below a confidence of 0.96 and more
        self.register_buffer("bias", bias)
        self.mode = mode

    def forward(self, x):
        p = torch.nn.functional.avg_pool2d(x, CELL)
        red = (p[:, 0:1] - 0.5 * (p[:, 1:2] + p[:, 2:3]) - 0.5).flatten(2)
        score = torch.sigmoid(20 * red) if self.mode == "red" else torch.sigmoid(self.bias + 0 * red)
        return torch.cat([self.boxes, score], dim=1)


def write_tiny_detector(path: Path, *, mode: str = "red", cell: int = 0) -> Path:
    """An ONNX detector (needs the `onnx` test dependency to export). `cell` (row * 8 + col) is the one that fires
    in "fixed" mode."""
    import warnings

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _GridDetector(mode, cell),
            torch.zeros(1, 3, INPUT, INPUT),
            buf,
            dynamo=False,
            opset_version=12,
            input_names=["images"],
            output_names=["output0"],
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return path


PROTO = 160  # YOLOv8-seg's prototype masks: 32 of them at a quarter of the input size
N_PROTOS = 32


class _GridSegmenter(_GridDetector):
    """YOLOv8-seg's two outputs: [1, 4 + 1 class + 32 mask coefficients, anchors] and the prototypes [1, 32, 160,
    160]. Prototype 0 is a disk (radius `radius` input pixels) centred in the firing cell, the others are zero; the
    firing anchor's coefficients are (1, 0, …), so its mask is that disk, not its box."""

    def __init__(self, mode: str, cell: int, radius: float):
        super().__init__(mode, cell)
        n = INPUT // CELL
        coef = torch.zeros(1, N_PROTOS, n * n)
        coef[0, 0, cell] = 1.0
        self.register_buffer("coef", coef)
        row, col = divmod(cell, n)
        ys, xs = torch.meshgrid(torch.arange(PROTO) + 0.5, torch.arange(PROTO) + 0.5, indexing="ij")
        scale = INPUT / PROTO
        inside = (xs * scale - (col + 0.5) * CELL) ** 2 + (ys * scale - (row + 0.5) * CELL) ** 2 <= radius**2
        protos = torch.zeros(1, N_PROTOS, PROTO, PROTO)
        protos[0, 0] = torch.where(inside, 12.0, -12.0)
        self.register_buffer("protos", protos)

    def forward(self, x):
        boxes = super().forward(x)
        return torch.cat([boxes, self.coef + 0 * boxes[:, :1]], dim=1), self.protos + 0 * x.mean()


def write_tiny_seg_detector(path: Path, *, mode: str = "fixed", cell: int = 0, radius: float = 28.0) -> Path:
    """A YOLOv8-seg-shaped ONNX detector whose one region's mask is a disk inside its cell (see _GridSegmenter)."""
    import warnings

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _GridSegmenter(mode, cell, radius),
            torch.zeros(1, 3, INPUT, INPUT),
            buf,
            dynamo=False,
            opset_version=12,
            input_names=["images"],
            output_names=["output0", "output1"],
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return path


def cell_box(cell: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The image-pixel box of a grid cell for an image of `size` letterboxed (centred) into the input."""
    w, h = size
    scale = INPUT / max(w, h)
    px, py = (INPUT - round(w * scale)) // 2, (INPUT - round(h * scale)) // 2
    row, col = divmod(cell, INPUT // CELL)
    return (
        round((col * CELL - px) / scale),
        round((row * CELL - py) / scale),
        round(((col + 1) * CELL - px) / scale),
        round(((row + 1) * CELL - py) / scale),
    )


def write_random_gfpgan(path: Path, seed: int = 0) -> Path:
    """A GFPGANv1Clean with random weights (spandrel fixes its size: 512², ~87 M parameters), saved as fp16
    safetensors (~175 MB) under the real key names."""
    from safetensors.torch import save_file

    from webui.generation.upscaler_models import load_spandrel

    load_spandrel()  # registers spandrel without its torchvision-importing __init__
    import importlib

    arch = importlib.import_module("spandrel.architectures.GFPGAN")
    torch.manual_seed(seed)
    net = arch.GFPGAN(
        out_size=512,
        num_style_feat=512,
        channel_multiplier=2,
        decoder_load_path=None,
        fix_decoder=False,
        num_mlp=8,
        input_is_latent=True,
        different_w=True,
        narrow=1,
        sft_half=True,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().to(torch.float16).contiguous() for k, v in net.state_dict().items()}, str(path))
    return path
