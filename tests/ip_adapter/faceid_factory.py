"""Tiny insightface-shaped ONNX models and a tiny FaceID adapter, in the layouts users have.

- detector (det_10g.onnx's interface): input [1, 3, 640, 640] normalised (x - 127.5) / 128; nine outputs in
  SCRFD's order — scores [N·2, 1] at strides 8, 16, 32, then box distances [N·2, 4], then landmark offsets
  [N·2, 10] (in stride units from each anchor point, two anchors per point). Here only stride 32 fires: a 32×32
  cell whose mean is bright (normalised mean over 0.5) scores ~1, every other cell ~0; its box reaches BOX strides
  around the anchor point (the cell's top-left corner) and its landmarks sit at LANDMARKS strides from it.
- recognizer (w600k_r50.onnx's interface): input [1, 3, 112, 112] → [1, 512] through a strided conv and a dense
  layer (random, fixed seed).
- FaceID adapter (ip-adapter-faceid_sd15 as safetensors): image_proj.proj.0/proj.2/norm, ip_adapter.<n>.to_k/v_ip.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

STRIDE = 32
BOX = 1.5
LANDMARKS = np.array([[-0.4, -0.3], [0.4, -0.3], [0.0, 0.1], [-0.3, 0.5], [0.3, 0.5]], dtype=np.float32)


def _save(graph, path: Path) -> Path:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def write_detector(path: Path) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, outputs = [], [], {"score": [], "bbox": [], "kps": []}
    for s in (8, 16, 32):
        for kind, channels, last in (("score", 2, 1), ("bbox", 8, 4), ("kps", 20, 10)):
            w = np.zeros((channels, 3, s, s), np.float32)
            if kind == "score":
                b = np.full(channels, -30.0 if s != STRIDE else -50.0 * 0.5, np.float32)
                if s == STRIDE:
                    w[:] = 50.0 / (3 * s * s)  # 50 × (cell mean − 0.5)
            elif kind == "bbox":
                b = np.full(channels, BOX, np.float32)
            else:
                b = np.tile(LANDMARKS.reshape(-1), 2)
            name = f"{kind}{s}"
            inits += [numpy_helper.from_array(w, f"{name}_w"), numpy_helper.from_array(b, f"{name}_b")]
            inits.append(numpy_helper.from_array(np.array([-1, last], np.int64), f"{name}_shape"))
            nodes.append(helper.make_node("Conv", ["input.1", f"{name}_w", f"{name}_b"], [f"{name}_c"], strides=[s, s]))
            src = f"{name}_c"
            if kind == "score":
                nodes.append(helper.make_node("Sigmoid", [src], [f"{name}_sig"]))
                src = f"{name}_sig"
            nodes.append(helper.make_node("Transpose", [src], [f"{name}_t"], perm=[0, 2, 3, 1]))
            nodes.append(helper.make_node("Reshape", [f"{name}_t", f"{name}_shape"], [name]))
            outputs[kind].append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, last]))
    graph = helper.make_graph(
        nodes,
        "tiny_scrfd",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 640, 640])],
        outputs["score"] + outputs["bbox"] + outputs["kps"],
        inits,
    )
    return _save(graph, path)


def write_recognizer(path: Path, seed: int = 0) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array(rng.standard_normal((8, 3, 8, 8)).astype(np.float32) * 0.1, "w"),
        numpy_helper.from_array(rng.standard_normal((8 * 14 * 14, 512)).astype(np.float32) * 0.1, "fc"),
        numpy_helper.from_array(np.zeros(512, np.float32), "fc_b"),
    ]
    nodes = [
        helper.make_node("Conv", ["input.1", "w"], ["c"], strides=[8, 8]),
        helper.make_node("Flatten", ["c"], ["f"]),
        helper.make_node("Gemm", ["f", "fc", "fc_b"], ["683"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_arcface",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 112, 112])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, [1, 512])],
        inits,
    )
    return _save(graph, path)


def write_insightface(models: Path) -> Path:
    folder = models / "insightface" / "models" / "buffalo_l"  # where Forge keeps them
    write_detector(folder / "det_10g.onnx")
    write_recognizer(folder / "w600k_r50.onnx")
    return folder


def write_faceid_adapter(path: Path, seed: int = 0) -> Path:
    """ip-adapter-faceid_sd15's layout (proj.0: 512 → 512·mult, proj.2: → 4 tokens × cross, norm) for the tiny
    UNet, with the base tiny adapter's to_k_ip/to_v_ip."""
    from safetensors.torch import load_file, save_file

    from tests.factories import tiny_components
    from tests.ip_adapter.test_ip_adapter import write_tiny_adapter

    cross = tiny_components(0)[0].config.cross_attention_dim
    g = torch.Generator().manual_seed(seed)
    tmp = write_tiny_adapter(path.with_name("base-for-faceid.safetensors"), seed=seed)
    state = {k: v for k, v in load_file(str(tmp)).items() if k.startswith("ip_adapter.")}
    tmp.unlink()
    state |= {
        "image_proj.proj.0.weight": torch.randn(512, 512, generator=g) * 0.2,
        "image_proj.proj.0.bias": torch.zeros(512),
        "image_proj.proj.2.weight": torch.randn(cross * 4, 512, generator=g) * 0.2,
        "image_proj.proj.2.bias": torch.zeros(cross * 4),
        "image_proj.norm.weight": torch.ones(cross),
        "image_proj.norm.bias": torch.zeros(cross),
    }
    save_file(state, str(path))
    return path


def face_image(cell: tuple[int, int] = (8, 8), seed: int = 0, size: int = 640):
    """A dark picture with one bright textured 32×32 'face' filling grid cell `cell` (column, row) of stride 32."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = np.full((size, size, 3), 10, np.uint8)
    x, y = cell[0] * STRIDE, cell[1] * STRIDE
    pixels[y : y + STRIDE, x : x + STRIDE] = rng.integers(200, 256, (STRIDE, STRIDE, 3), dtype=np.uint8)
    return Image.fromarray(pixels)
