"""The options for live previews and speed: CPU precision, torch.compile, step caching, token merging, VAE tiling."""

from __future__ import annotations

from webui.options.definition import OptionDef, GUARD_MAX_PIXELS


def options() -> list[OptionDef]:
    o = OptionDef
    return [
        o("live_previews_enable", True, "Show live previews of the created image", "Live previews", bool),
        o(
            "show_progress_every_n_steps",
            5,
            "Live preview display period (steps)",
            "Live previews",
            int,
            minimum=-1,
            maximum=32,
            step=1,
        ),
        o(
            "show_progress_type",
            "Approx cheap",
            "Live preview method (Approx cheap: a linear map, ~free; TAESD: "
            "models/VAE-approx/taesd*_decoder, else Approx cheap; Full: the VAE, slow on a CPU)",
            "Live previews",
            choices=("Approx cheap", "TAESD", "Full"),
        ),
        o(
            "cpu_precision",
            "Automatic",
            "CPU precision of the UNet (Automatic: bf16 where the CPU has it natively "
            "and the model is large enough to gain)",
            "Optimizations",
            choices=("Automatic", "bf16", "fp32"),
        ),
        o(
            "cpu_vae_precision",
            "Automatic",
            "CPU precision of the VAE decode (bf16: ~3× faster at 512² where the CPU "
            "has native bf16; Automatic: bf16 for a VAE whose bf16 decode of a test image is ≥ 40 dB PSNR against "
            'fp32, checked once per VAE; recorded as "VAE precision")',
            "Optimizations",
            choices=("Automatic", "fp32", "bf16"),
        ),
        o(
            "cpu_compile",
            False,
            "torch.compile the UNet on the CPU (slow first image per size; falls back to eager on any error)",
            "Optimizations",
            bool,
        ),
        o(
            "cpu_backend",
            "torch",
            "CPU backend of the UNet (openvino: optional, install with pip install --no-deps -r "
            "requirements-openvino.txt; converted once per checkpoint and LoRA set into the data folder's cache, at "
            'the precision above; no ControlNet/IP-Adapter, step cache or token merging; recorded as "CPU backend")',
            "Optimizations",
            choices=("torch", "openvino"),
        ),
        o(
            "cpu_attention",
            "Automatic",
            "Attention kernel of the torch UNet on the CPU (Automatic: OpenVINO's for a bf16 UNet when the openvino "
            "package is installed and the CPU has no AMX, else torch's, which is the faster one with AMX; the rest of "
            "the UNet stays torch, so LoRA, ControlNet, IP-Adapter and the speed presets work as before; recorded as "
            '"CPU attention")',
            "Optimizations",
            choices=("Automatic", "torch", "openvino"),
        ),
        o(
            "openvino_cache_mb",
            20000,
            "OpenVINO cache size in MB (the data folder's cache/openvino: one converted UNet per checkpoint and LoRA "
            "set, 3.4 GB for SD 1.5, and its compiled shapes; least recently used ones are removed to fit, never the "
            "one in use; there is no unlimited value, the maximum is 4 TB)",
            "Optimizations",
            int,
            minimum=1,
            maximum=2**22,
            step=1000,
        ),
        # speed presets (#21): what they cost in time and quality on the demo model is in docs/performance.md
        o(
            "step_cache_interval",
            0,
            "Step cache: every N-th UNet step in full, the others reuse its deep features "
            '(DeepCache; 0 or 1: off; recorded as "Step cache")',
            "Optimizations",
            int,
            minimum=0,
            maximum=10,
            step=1,
        ),
        o(
            "token_merging_ratio",
            0.0,
            "Token merging ratio (ToMe: merges similar tokens of the full-resolution self-attention; 0: off)",
            "Optimizations",
            float,
            minimum=0.0,
            maximum=0.9,
            step=0.1,
        ),
        o(
            "token_merging_ratio_img2img",
            0.0,
            "Token merging ratio for img2img and inpaint (0: the ratio above)",
            "Optimizations",
            float,
            minimum=0.0,
            maximum=0.9,
            step=0.1,
        ),
        o(
            "token_merging_ratio_hr",
            0.0,
            "Token merging ratio for the hires pass (0: the ratio above)",
            "Optimizations",
            float,
            minimum=0.0,
            maximum=0.9,
            step=0.1,
        ),
        # Forge's "GPU Weights (MB)" (#18 Memory): above 0 it decides the offloading instead of --medvram/--lowvram
        o(
            "gpu_weights_mb",
            0,
            "GPU weights in MB: what the model's weights may take on the GPU (0: all, or as --medvram/--lowvram say); "
            "less than the model offloads it (whole parts, else groups of blocks); applies at the next job; no effect "
            "without a GPU",
            "Optimizations",
            int,
            minimum=0,
            maximum=2**20,
            step=256,
        ),
        o(
            "vae_tiling_min_pixels",
            1024 * 1024,
            "Decode with a tiled VAE above this many pixels (0: never)",
            "Optimizations",
            int,
            minimum=0,
            maximum=GUARD_MAX_PIXELS,
        ),
    ]
