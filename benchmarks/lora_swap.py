"""Time to switch between two LoRA sets on a warm model (adapters already held), and back to none.
Target: <= 50 ms per switch on the tiny model, with no file reads.

    python benchmarks/lora_swap.py [--models tiny,mid,/path/to/checkpoint.safetensors] [--repeats 20]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from _common import median, temp_data_dir, timed, write_model


def write_loras(lora_dir, unet, te, names, rank=8):
    from diffusers.utils.peft_utils import delete_adapter_layers
    from peft import LoraConfig, get_peft_model_state_dict

    from webui.training.export import peft_to_kohya, save_lora, target_modules

    for i, name in enumerate(names):
        torch.manual_seed(i)
        unet.add_adapter(
            LoraConfig(
                r=rank,
                lora_alpha=rank,
                init_lora_weights="gaussian",
                target_modules=target_modules("attention", text_encoder=False),
            ),
            adapter_name="b",
        )
        te.add_adapter(
            LoraConfig(
                r=rank,
                lora_alpha=rank,
                init_lora_weights="gaussian",
                target_modules=target_modules("attention", text_encoder=True),
            ),
            adapter_name="b",
        )
        sd = peft_to_kohya(
            get_peft_model_state_dict(unet, adapter_name="b"), get_peft_model_state_dict(te, adapter_name="b"), rank
        )
        save_lora(lora_dir / f"{name}.safetensors", sd, {"ss_network_dim": rank})
        delete_adapter_layers(unet, "b")
        delete_adapter_layers(te, "b")


def bench(kind: str, repeats: int) -> dict[str, float]:
    from webui.app import Application
    from webui.flags import parse_args
    from webui.lora.catalog import LoraCatalog
    from webui.lora.service import LoraService
    from webui.lora.tags import LoraTag

    data = temp_data_dir()
    if kind.endswith((".safetensors", ".ckpt")):  # a real checkpoint: linked, not copied
        (data / "models" / "Stable-diffusion").mkdir(parents=True)
        (data / "models" / "Stable-diffusion" / Path(kind).name).symlink_to(Path(kind).resolve())
    else:
        write_model(kind, data / "models" / "Stable-diffusion")
    app = Application(parse_args(["--data-dir", str(data), "--nowebui"]))
    app.catalog.demo_dir = None
    app.models.refresh()
    model = app.models.load(None)
    write_loras(app.paths.lora_dir, model.pipeline.unet, model.pipeline.text_encoder, ["a", "b", "c"])
    service = LoraService(LoraCatalog([app.paths.lora_dir], app.hashes))
    service.refresh()
    set_a = [LoraTag("a", 1.0, 1.0), LoraTag("b", 0.5, 0.7)]
    set_b = [LoraTag("c", 0.8, 0.8)]
    service.prepare(model, set_a)
    service.prepare(model, set_b)  # warm: every adapter held
    reads = service.file_reads
    swaps = timed(lambda: (service.prepare(model, set_a), service.prepare(model, set_b)), repeats)
    off = timed(lambda: (service.prepare(model, []), service.prepare(model, set_a)), repeats)
    assert service.file_reads == reads, "a warm swap read a file"
    return {"swap": median(swaps) / 2, "off_on": median(off) / 2, "reads": service.file_reads - reads}


def main() -> None:
    from webui.app import _quiet_libraries

    _quiet_libraries()
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="tiny")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for kind in args.models.split(","):
        r = bench(kind, args.repeats)
        print(
            f"{kind}: switch between two LoRA sets {r['swap'] * 1000:.2f} ms (target <= 50 ms), "
            f"none <-> set {r['off_on'] * 1000:.2f} ms, file reads during swaps: {r['reads']}"
        )


if __name__ == "__main__":
    main()
