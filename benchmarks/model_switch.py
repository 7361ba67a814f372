"""Cold checkpoint load (Easel's manager) against plain diffusers `from_single_file`, and a cached switch back.
Targets: cold ≤ 1.2× diffusers; cached switch ≤ 5% of the cold load.

    python benchmarks/model_switch.py [--models tiny,mid] [--repeats 3]
"""

from __future__ import annotations

import argparse
import shutil

from _common import median, temp_data_dir, timed, write_model


def bench(kind: str, repeats: int) -> dict[str, float]:
    from diffusers import StableDiffusionPipeline

    from webui.app import Application
    from webui.flags import parse_args
    from webui.models.loader import probe_file, write_config_folder

    data = temp_data_dir()
    ckpt = data / "models" / "Stable-diffusion"
    a = write_model(kind, ckpt)
    b = ckpt / f"{kind}-copy.safetensors"
    shutil.copyfile(a, b)
    app = Application(parse_args(["--data-dir", str(data), "--nowebui"]))
    app.catalog.demo_dir = None
    app.models.refresh()
    title_a, title_b = (app.catalog.find(p.name).title for p in (a, b))
    folder = write_config_folder(probe_file(a), data / "cfg")

    def cold():
        app.models.unload()
        app.models.load(title_a)

    def plain():
        StableDiffusionPipeline.from_single_file(
            str(a),
            config=str(folder),
            local_files_only=True,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )

    cold(), plain()  # warm the OS page cache and imports for both
    tc, td = [], []
    for _ in range(repeats):
        tc += timed(cold, 1)
        td += timed(plain, 1)
    app.models.load(title_b)
    switch = median(timed(lambda: (app.models.load(title_a), app.models.load(title_b)), repeats)) / 2
    return {"cold": median(tc), "diffusers": median(td), "switch": switch}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="tiny,mid")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    for kind in args.models.split(","):
        r = bench(kind, args.repeats)
        print(
            f"{kind}: cold {r['cold']:.3f} s vs diffusers {r['diffusers']:.3f} s = {r['cold'] / r['diffusers']:.2f}x "
            f"(target <= 1.2); cached switch {r['switch'] * 1000:.2f} ms = {100 * r['switch'] / r['cold']:.2f}% "
            f"of cold (target <= 5%)"
        )


if __name__ == "__main__":
    main()
