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


def write_faceid_plus_adapter(path: Path, clip_hidden: int, seed: int = 0) -> Path:
    """ip-adapter-faceid-plus(v2)_sd15's layout: proj.0 (512 → 1024), proj.2 (→ 4 tokens × cross), norm, and the
    face Resampler `perceiver_resampler.proj_in/proj_out/norm_out/layers.<i>.0.*/layers.<i>.1.*` (4 layers, one head
    of 64, a 4× feed-forward: what diffusers builds) taking the CLIP hidden states (`clip_hidden` wide)."""
    from safetensors.torch import load_file, save_file

    from tests.factories import tiny_components
    from tests.ip_adapter.test_ip_adapter import write_tiny_adapter

    cross = tiny_components(0)[0].config.cross_attention_dim
    dim = cross  # Plus v2's shortcut adds the face tokens to the output: as wide as the cross-attention (768 real)
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=g) * 0.2

    tmp = write_tiny_adapter(path.with_name("base-for-faceid-plus.safetensors"), seed=seed)
    state = {k: v for k, v in load_file(str(tmp)).items() if k.startswith("ip_adapter.")}
    tmp.unlink()
    proj = {
        "proj.0.weight": rnd(1024, 512),
        "proj.0.bias": torch.zeros(1024),
        "proj.2.weight": rnd(dim * 4, 1024),
        "proj.2.bias": torch.zeros(dim * 4),
        "norm.weight": torch.ones(dim),
        "norm.bias": torch.zeros(dim),
        "perceiver_resampler.proj_in.weight": rnd(dim, clip_hidden),
        "perceiver_resampler.proj_in.bias": torch.zeros(dim),
        "perceiver_resampler.proj_out.weight": rnd(cross, dim),
        "perceiver_resampler.proj_out.bias": torch.zeros(cross),
        "perceiver_resampler.norm_out.weight": torch.ones(cross),
        "perceiver_resampler.norm_out.bias": torch.zeros(cross),
    }
    for i in range(4):
        p = f"perceiver_resampler.layers.{i}."
        proj |= {
            p + "0.norm1.weight": torch.ones(dim),
            p + "0.norm1.bias": torch.zeros(dim),
            p + "0.norm2.weight": torch.ones(dim),
            p + "0.norm2.bias": torch.zeros(dim),
            p + "0.to_q.weight": rnd(64, dim),
            p + "0.to_kv.weight": rnd(128, dim),
            p + "0.to_out.weight": rnd(dim, 64),
            p + "1.0.weight": torch.ones(dim),
            p + "1.0.bias": torch.zeros(dim),
            p + "1.1.weight": rnd(dim * 4, dim),
            p + "1.3.weight": rnd(dim, dim * 4),
        }
    state |= {f"image_proj.{k}": v for k, v in proj.items()}
    save_file(state, str(path))
    return path
