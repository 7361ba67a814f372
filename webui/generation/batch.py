"""img2img Batch: every image in an input folder → the output folder, with an optional mask folder (same file
names, any image extension), as A1111's Batch tab does."""

from __future__ import annotations

from pathlib import Path

from PIL import UnidentifiedImageError

from webui.errors import InvalidRequest
from webui.fsutil import atomic_path
from webui.generation.control import JobControl
from webui.generation.img2img import run_img2img
from webui.generation.requests import GenerationResult, Img2ImgRequest
from webui.infotext import pnginfo_for
from webui.outputs import open_user_image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def check_batch_dirs(input_dir: str, output_dir: str, mask_dir: str | None) -> tuple[Path, Path, Path | None]:
    src = Path(input_dir).expanduser()
    if not src.is_dir():
        raise InvalidRequest(f"input folder not found: {input_dir}")
    if not list_images(src):
        raise InvalidRequest(f"no images in the input folder {input_dir}")
    if not output_dir:
        raise InvalidRequest("an output folder is required")
    masks = Path(mask_dir).expanduser() if mask_dir else None
    if masks is not None and not masks.is_dir():
        raise InvalidRequest(f"mask folder not found: {mask_dir}")
    return src, Path(output_dir).expanduser(), masks


def _find_mask(masks: Path | None, name: str) -> Path | None:
    if masks is None:
        return None
    for ext in IMAGE_EXTENSIONS:
        p = masks / (Path(name).stem + ext)
        if p.exists():
            return p
    return None


def run_batch(
    req: Img2ImgRequest,
    src: Path,
    dst: Path,
    masks: Path | None,
    services,
    opts,
    control: JobControl,
    scale: float | None = None,
) -> GenerationResult:
    """With `scale` ("Resize by"), each image is generated at its own size × scale (floored to multiples of 8)."""
    total = GenerationResult()
    dst.mkdir(parents=True, exist_ok=True)
    files = list_images(src)
    for n, path in enumerate(files):
        if control.interrupted:
            break
        try:
            with open_user_image(path) as im:
                image = im.convert("RGB")
            mpath = _find_mask(masks, path.name)
            mask = open_user_image(mpath).convert("L") if mpath else None
        except (OSError, UnidentifiedImageError) as e:
            total.warnings.append(f"{path.name}: skipped, not a readable image ({e})")
            continue
        control.textinfo = f"{n + 1}/{len(files)}: {path.name}"
        this = req
        if scale:
            w, h = (max(8, int(v * scale) // 8 * 8) for v in image.size)
            this = req.model_copy(update={"width": w, "height": h})
        result = run_img2img(this, [image], mask, services, opts, control, save=False, save_grid=False)
        for i, (img, text) in enumerate(zip(result.images, result.infotexts)):
            name = path.stem + (f"-{i}" if len(result.images) > 1 else "") + ".png"
            with atomic_path(dst / name) as tmp:
                img.save(tmp, format="PNG", pnginfo=pnginfo_for(text))
            total.paths.append(str(dst / name))
            total.images.append(img)
            total.infotexts.append(text)
        total.warnings.extend(result.warnings)
        total.info = result.info
    total.interrupted = control.interrupted
    return total
