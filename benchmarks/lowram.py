"""--lowram on the CPU (#18): RSS of a FLUX-shaped model with full-size-width text encoders (CLIP-L: 768 wide, 12
layers; a T5 encoder 768 wide, 12 layers, T5's 32k vocabulary: T5-base size, as T5-XXL won't fit a test machine)
and a tiny transformer, loaded and used for one txt2img through the production path, with and without --lowram.
Each mode runs in its own process; printed: RSS after the load, after the generation (steady state), the peak
(VmHWM), and the generation time.

    python benchmarks/lowram.py

One run on the shared 2-core AMD EPYC (load average ~9 from other jobs), 4 steps at 64x64:
    --lowram off: RSS after load 1494 MB, after a txt2img 2320 MB, peak 2332 MB, txt2img 22.31 s
    --lowram on : RSS after load  505 MB, after a txt2img 1499 MB, peak 2344 MB, txt2img 21.80 s
The encoders (233M parameters, fp32 in RAM) are ~0.93 GB; the steady state drops by 0.8-1.0 GB, the peak does not
(an encoding needs them all), and each encoding reads the files again (times too noisy here to show its cost).
Without glibc's malloc_trim after the release the RSS did not drop at all (2015 MB after a txt2img).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from _common import temp_data_dir


def cpu_name() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "?")


def write_models(models: Path) -> None:
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from tests.factories_families import FLUX_TINY, FLUX_TINY_EASEL, _save, clip_to_comfy, tiny_flow_vae, vae_to_ldm
    from webui.models.flux_keys import diffusers_to_bfl

    from diffusers import FluxTransformer2DModel

    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        guidance_embeds=True, **dict(FLUX_TINY, joint_attention_dim=768, pooled_projection_dim=768)
    )
    clip = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            vocab_size=49408,
            max_position_embeddings=77,
            hidden_act="quick_gelu",
            projection_dim=768,
        )
    )
    t5 = T5EncoderModel(
        T5Config(
            vocab_size=32128,
            d_model=768,
            d_kv=64,
            d_ff=2048,
            num_layers=12,
            num_heads=12,
            feed_forward_proj="gated-gelu",
            is_encoder_decoder=False,
        )
    )
    _save(
        models / "Stable-diffusion" / "flux1-dev-midte.safetensors",
        diffusers_to_bfl(transformer.state_dict()),
        {"easel.config": json.dumps(FLUX_TINY_EASEL)},
    )
    _save(models / "text_encoder" / "clip_l.safetensors", {k: v.half() for k, v in clip_to_comfy(clip).items()})
    _save(
        models / "text_encoder" / "t5xxl_fp16.safetensors",
        {k: v.half() for k, v in t5.state_dict().items() if k != "encoder.embed_tokens.weight"},
    )
    _save(models / "VAE" / "ae.safetensors", vae_to_ldm(tiny_flow_vae(0, 0.3611, 0.1159)))


def status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def run_mode(data: str, lowram: bool) -> dict:
    from webui.app import Application
    from webui.flags import parse_args
    from webui.generation.requests import Txt2ImgRequest

    app = Application(parse_args(["--data-dir", data, "--nowebui", *(["--lowram"] if lowram else [])]))
    app.catalog.demo_dir = None
    app.start(wait_for_model=False)
    app.switch_checkpoint("flux1-dev-midte")
    loaded = status("VmRSS")
    req = Txt2ImgRequest(prompt="a red circle", steps=4, width=64, height=64, seed=1, cfg_scale=1.0)
    t0 = time.perf_counter()
    app.jobs.wait(app.submit_txt2img(req, from_api=True))
    seconds = time.perf_counter() - t0
    return {
        "lowram": lowram,
        "rss_loaded": loaded,
        "rss_after": status("VmRSS"),
        "peak": status("VmHWM"),
        "seconds": seconds,
    }


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        folder, mode = sys.argv[2].split("::")
        print(json.dumps(run_mode(folder, mode == "low")))
        return
    data = temp_data_dir()
    write_models(data / "models")
    print(f"CPU: {cpu_name()}")
    for mode in ("full", "low"):
        out = subprocess.run([sys.executable, __file__, "--child", f"{data}::{mode}"], capture_output=True, text=True)
        if out.returncode:
            raise SystemExit(out.stderr[-3000:])
        line = out.stdout.strip().splitlines()[-1]
        r = json.loads(line)
        mb = 1 / 2**20
        print(
            f"--lowram {'on ' if r['lowram'] else 'off'}: RSS after load {r['rss_loaded'] * mb:.0f} MB, after a "
            f"txt2img {r['rss_after'] * mb:.0f} MB, peak {r['peak'] * mb:.0f} MB, txt2img {r['seconds']:.2f} s"
        )


if __name__ == "__main__":
    main()
