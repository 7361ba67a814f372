"""Where one txt2img's time goes, through the production path (Application → queue → plan → pipeline → decode →
infotext → PNG): an SD 1.5-sized checkpoint with random weights (the shipped SD1.5 configs: UNet, VAE, CLIP-L text
encoder), written once in A1111 layout. The UNet, the text encoder and the VAE decoder are timed by forward hooks
(torch's own, nothing patched); the rest of the call is what is left. A 1-step warm-up comes first and is reported
too (the process's first image: oneDNN primitive creation, first-touch of the weights).

    python benchmarks/e2e_breakdown.py [--size 512] [--steps 4] [--rounds 1] [--set cpu_vae_precision=fp32 ...]
"""

from __future__ import annotations

import argparse
import collections
import time
from pathlib import Path

from _common import temp_data_dir


def write_sd15(folder: Path) -> Path:
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from webui.models.ldm_keys import save_a1111_checkpoint
    from webui.models.probe import CONFIGS_DIR, load_template

    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(load_template("sd15", "unet")).eval()
    vae = AutoencoderKL.from_config(load_template("sd15", "vae")).eval()
    te = CLIPTextModel(CLIPTextConfig.from_pretrained(str(CONFIGS_DIR / "sd15" / "text_encoder"))).eval()
    folder.mkdir(parents=True, exist_ok=True)
    return save_a1111_checkpoint(folder / "sd15-random.safetensors", unet, vae, te)


class PhaseTimer:
    """Wall time spent inside modules' forwards, by label (forward pre/post hooks)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = collections.defaultdict(float)
        self.calls: collections.Counter = collections.Counter()
        self._started: dict[str, float] = {}

    def watch(self, module, label: str) -> None:
        def pre(_m, _args):
            self._started[label] = time.perf_counter()

        def post(_m, _args, _out):
            self.seconds[label] += time.perf_counter() - self._started.pop(label)
            self.calls[label] += 1

        module.register_forward_pre_hook(pre)
        module.register_forward_hook(post)

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()


def parse_sets(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        out[key] = value
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--ckpt", default="", help="an existing checkpoint instead of writing the random SD1.5 one")
    ap.add_argument("--set", nargs="*", default=[], help="override_settings as key=value (strings)")
    a = ap.parse_args()

    import torch

    from webui.app import Application
    from webui.flags import parse_args
    from webui.generation.requests import Txt2ImgRequest

    data = temp_data_dir()
    ckpt = Path(a.ckpt) if a.ckpt else write_sd15(data / "models" / "Stable-diffusion")
    app = Application(parse_args(["--data-dir", str(data), "--nowebui", "--ckpt", str(ckpt)]), owns_process=True)
    app.catalog.demo_dir = None
    app.start(wait_for_model=True)
    pipe = app.models.active.pipeline
    timer = PhaseTimer()
    timer.watch(pipe.unet, "UNet forwards (CFG batch 2)")
    timer.watch(pipe.text_encoder, "text encoder forwards")
    timer.watch(pipe.vae.decoder, "VAE decode")
    overrides = {"samples_save": True, **parse_sets(a.set)}
    req = dict(
        prompt="a red circle on a blue background",
        seed=1,
        sampler_name="Euler a",
        width=a.size,
        height=a.size,
        override_settings=overrides,
    )
    print(f"{torch.get_num_threads()} threads, {a.size}², {a.steps} steps, settings {overrides}")
    for label, steps in [("warm-up (first image of the process)", 1)] + [
        (f"round {i + 1}", a.steps) for i in range(a.rounds)
    ]:
        timer.reset()
        t0 = time.perf_counter()
        result = app.jobs.wait(app.submit_txt2img(Txt2ImgRequest(steps=steps, **req), from_api=True))
        total = time.perf_counter() - t0
        print(f"{label}, {steps} step(s): {total:.2f} s")
        for name, seconds in sorted(timer.seconds.items(), key=lambda kv: -kv[1]):
            print(f"  {name:30s} {seconds:8.2f} s  {100 * seconds / total:5.1f}%  ({timer.calls[name]} calls)")
        rest = total - sum(timer.seconds.values())
        print(
            f"  {'everything else':30s} {rest:8.2f} s  {100 * rest / total:5.1f}%  (plan, weights to bf16 for "
            f"the call, scheduler, callbacks, infotext, PNG, queue)"
        )
    fields = [f for f in result.infotexts[0].split(", ") if "recision" in f]
    print("infotext:", ", ".join(fields) or "(fp32)")
    app.stop()


if __name__ == "__main__":
    main()
