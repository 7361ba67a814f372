"""OutputWriter naming, numbering, atomic saves, grids and base64 helpers."""

from __future__ import annotations

import base64
import datetime as dt
import io
import threading
from pathlib import Path

import pytest
from PIL import Image

from webui.errors import InvalidRequest, PayloadTooLarge
from webui.infotext import read_image_infotext
from webui.outputs import (
    OutputWriter,
    decode_base64_image,
    encode_png_base64,
    make_grid,
    render_pattern,
    sanitize_filename_part,
)

DAY = dt.datetime(2024, 5, 6, 7, 8, 9)
INFO = "a cat, 日本語\nNegative prompt: blurry\nSteps: 20, Seed: 1234, Size: 16x16, Version: easel-0.1.0"


def img(color: str = "red", size: tuple[int, int] = (16, 16), mode: str = "RGB") -> Image.Image:
    return Image.new(mode, size, color)


def writer(tmp_path: Path, **options: object) -> OutputWriter:
    return OutputWriter(tmp_path, options.get)


def save(w: OutputWriter, seed: int = 1234, **kw: object) -> Path:
    args: dict = {"kind": "txt2img", "seed": seed, "prompt": "a cat", "infotext": INFO, "date": DAY} | kw
    return w.save_image(img(), **args)


def no_temp_files(root: Path) -> bool:
    return not [p for p in root.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]


def test_default_folder_and_name(tmp_path: Path) -> None:
    path = save(writer(tmp_path))
    assert path == tmp_path / "outputs" / "txt2img-images" / "2024-05-06" / "00000-1234.png"
    with Image.open(path) as im:
        assert im.info["parameters"] == INFO and read_image_infotext(im) == INFO
    assert no_temp_files(tmp_path)


def test_numbering_increments_and_survives_gaps(tmp_path: Path) -> None:
    w = writer(tmp_path)
    names = [save(w, seed=s).name for s in (5, 6, 7)]
    assert names == ["00000-5.png", "00001-6.png", "00002-7.png"]
    folder = tmp_path / "outputs/txt2img-images/2024-05-06"
    (folder / "00001-6.png").unlink()
    assert save(w, seed=8).name == "00003-8.png"
    (folder / "00041-x.png").write_bytes(b"")
    (folder / "notes.txt").write_text("ignored")
    (folder / "12ab-x.png").write_bytes(b"")
    assert save(w, seed=9).name == "00042-9.png"


def test_same_name_is_never_overwritten(tmp_path: Path) -> None:
    w = writer(tmp_path, samples_filename_pattern="fixed")
    assert [save(w).name for _ in range(2)] == ["00000-fixed.png", "00001-fixed.png"]


def test_concurrent_saves_get_distinct_names(tmp_path: Path) -> None:
    w = writer(tmp_path)
    paths: list[Path] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work(i: int) -> None:
        try:
            barrier.wait()
            for j in range(5):
                paths.append(save(w, seed=7))
        except BaseException as e:  # pragma: no cover - surfaced below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len({p.name for p in paths}) == 40
    assert sorted(int(p.name[:5]) for p in paths) == list(range(40))
    assert all(p.stat().st_size > 0 for p in paths) and no_temp_files(tmp_path)


def test_kinds_grids_and_options(tmp_path: Path) -> None:
    w = writer(tmp_path)
    assert save(w, kind="img2img").parent == tmp_path / "outputs/img2img-images/2024-05-06"
    assert save(w, kind="extras").relative_to(tmp_path).as_posix() == "outputs/extras-images/2024-05-06/00000.png"
    assert save(w, grid=True).relative_to(tmp_path).as_posix() == "outputs/txt2img-grids/2024-05-06/grid-0000.png"
    assert save(w, grid=True, kind="img2img").name == "grid-0000.png"
    assert save(w, grid=True).name == "grid-0001.png"
    ext = writer(tmp_path / "ext", grid_extended_filename=True)
    assert save(ext, grid=True).name == "grid-0000-1234.png"
    with pytest.raises(InvalidRequest):
        save(w, grid=True, kind="extras")


def test_outdir_options_and_no_date_dirs(tmp_path: Path) -> None:
    absolute = tmp_path / "elsewhere"
    w = writer(tmp_path / "data", save_to_dirs=False, outdir_txt2img_samples=str(absolute), samples_filename_pattern="")
    assert save(w).parent == absolute
    assert save(w, prompt="a red cat").name == "00001-1234-a red cat.png"  # A1111's fallback pattern
    assert save(w, kind="img2img").parent == tmp_path / "data/outputs/img2img-images"


def test_filename_pattern_fields(tmp_path: Path) -> None:
    w = writer(tmp_path, samples_filename_pattern="[seed]-[steps]-[model_name]-[prompt_words]-[date]-[datetime]")
    path = save(w, prompt="A cat, (masterpiece:1.2) in the rain", model_name="sd v1/5", fields={"Steps": 20})
    assert path.name == "00000-1234-20-sd v1_5-A cat masterpiece 1 2 in the rain-2024-05-06-20240506070809.png"
    keep = writer(tmp_path / "k", samples_filename_pattern="[seed]-[unknown]")
    assert save(keep).name == "00000-1234-[unknown].png"


def test_prompt_is_sanitized_and_truncated(tmp_path: Path) -> None:
    w = writer(tmp_path, samples_filename_pattern="[prompt]")
    path = save(w, prompt='../../etc/passwd: <x> "y" | z? *\n' + "long " * 100)
    assert path.parent == tmp_path / "outputs/txt2img-images/2024-05-06"
    assert "/" not in path.name[5:] and len(path.name.encode()) <= 255
    assert path.name.startswith("00000-.._.._etc_passwd___x___y____z___")
    assert sanitize_filename_part("a b/c:d.. ") == "a_b_c_d.._"
    assert sanitize_filename_part(" a b/c:d.. ", replace_spaces=False) == "a b_c_d"
    assert len(sanitize_filename_part("x" * 500)) == 128
    long_unicode = writer(tmp_path / "u", samples_filename_pattern="[prompt_spaces]-[prompt_spaces]-[prompt_spaces]")
    assert len(save(long_unicode, prompt="日本語" * 100).name.encode()) <= 255


def test_directory_pattern_cannot_escape(tmp_path: Path) -> None:
    w = writer(tmp_path, directories_filename_pattern="../[date]/sub")
    assert save(w).parent == tmp_path / "outputs/txt2img-images/2024-05-06/sub"


def test_render_pattern_date_format() -> None:
    values = {"date": lambda fmt: DAY.strftime(fmt or "%Y-%m-%d"), "seed": 3}
    assert render_pattern("[date<%Y%m>]-[SEED]-[date]", values) == "202405-3-2024-05-06"


@pytest.mark.parametrize("fmt", ["jpg", "webp"])
def test_jpeg_webp_carry_exif(tmp_path: Path, fmt: str) -> None:
    w = writer(tmp_path, samples_format=fmt)
    path = w.save_image(img(mode="RGBA"), kind="txt2img", seed=1, prompt="p", infotext=INFO, date=DAY)
    assert path.suffix == f".{fmt}"
    with Image.open(path) as im:
        assert read_image_infotext(im) == INFO
    assert no_temp_files(tmp_path)


def test_unknown_format_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest):
        save(writer(tmp_path), extension="bmp")
    assert not list(tmp_path.rglob("*.*"))


def test_failed_write_removes_placeholder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import webui.outputs as outputs

    def boom(path: object, data: bytes) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(outputs, "atomic_write_bytes", boom)
    with pytest.raises(OSError):
        save(writer(tmp_path))
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


@pytest.mark.parametrize(
    "n,rows,size",
    [
        (1, None, (16, 16)),
        (2, None, (32, 16)),
        (3, None, (32, 32)),
        (4, None, (32, 32)),
        (5, None, (48, 32)),
        (9, None, (48, 48)),
        (4, 1, (64, 16)),
        (3, 5, (16, 48)),
    ],
)
def test_make_grid_shape(n: int, rows: int | None, size: tuple[int, int]) -> None:
    assert make_grid([img() for _ in range(n)], rows).size == size


def test_make_grid_centres_smaller_images() -> None:
    grid = make_grid([img("red", (16, 16)), img("blue", (8, 8), "RGBA")])
    assert grid.getpixel((0, 0)) == (255, 0, 0)
    assert grid.getpixel((16, 0)) == (255, 255, 255) and grid.getpixel((20, 4)) == (0, 0, 255)
    with pytest.raises(InvalidRequest):
        make_grid([])


def test_base64_round_trip_with_infotext() -> None:
    encoded = encode_png_base64(img("green"), INFO)
    for text in (encoded, "data:image/png;base64," + encoded, encoded[:20] + "\n" + encoded[20:]):
        decoded = decode_base64_image(text)
        assert decoded.size == (16, 16) and decoded.getpixel((0, 0)) == (0, 128, 0)
        assert read_image_infotext(decoded) == INFO


def test_base64_url_safe_and_unpadded() -> None:
    buf = io.BytesIO()
    img().save(buf, format="PNG")
    text = base64.urlsafe_b64encode(buf.getvalue()).decode().rstrip("=")
    assert decode_base64_image(text).size == (16, 16)


@pytest.mark.parametrize(
    "bad,message",
    [
        ("", "empty"),
        ("not base64!!", "base64"),
        (base64.b64encode(b"hello world").decode(), "not a readable image"),
        ("data:image/png,abcd", "data URL"),
        (None, "expected a base64 string"),
    ],
)
def test_base64_errors(bad: object, message: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        decode_base64_image(bad)  # type: ignore[arg-type]
    assert message in info.value.message


def test_truncated_image_is_invalid() -> None:
    raw = base64.b64decode(encode_png_base64(Image.effect_noise((64, 64), 50)))
    with pytest.raises(InvalidRequest):
        decode_base64_image(base64.b64encode(raw[: len(raw) // 2]).decode())


def test_pixel_limit_checked_before_decoding() -> None:
    big = encode_png_base64(Image.new("L", (300, 300)))
    assert decode_base64_image(big, max_pixels=300 * 300).size == (300, 300)
    with pytest.raises(PayloadTooLarge):
        decode_base64_image(big, max_pixels=300 * 299)


def test_decompression_bomb_refused() -> None:
    # A 1-bit 20000x20000 PNG compresses to a few kB; it must be refused from its header alone.
    buf = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buf, format="PNG")
    with pytest.raises(PayloadTooLarge):
        decode_base64_image(base64.b64encode(buf.getvalue()).decode())
