"""The X/Y/Z plot's grid image: the cells with their column, row and plane labels (Pillow only)."""

from __future__ import annotations

from typing import Any


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _wrap(draw: Any, text: str, font: Any, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split(" "):
        trial = f"{line} {word}".strip()
        if line and draw.textlength(trial, font=font) > width:
            lines.append(line)
            line = word
        else:
            line = trial
    return [*lines, line] if text else []


def draw_grid(
    cells: list[list[list[Any]]], labels: tuple[list[str], list[str], list[str]], legend: bool, margin: int
) -> tuple[Any, list[Any], dict[str, int]]:
    """cells[z][y][x] (None: not generated) → (the grid, one grid per z, layout {left, top, width, height})."""
    from PIL import Image, ImageDraw

    xs, ys, zs = (lbls if legend else [""] * len(lbls) for lbls in labels)
    present = [im for plane in cells for row in plane for im in row if im is not None]
    w, h = max(im.width for im in present), max(im.height for im in present)
    font = _font(max(10, min(w, h) // 8))
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_h = probe.textbbox((0, 0), "Ag", font=font)[3] + 2
    pad = max(2, line_h // 3)
    col_lines = [_wrap(probe, t, font, max(w - 2 * pad, 16)) for t in xs]
    row_lines = [_wrap(probe, t, font, max(w, 128)) for t in ys]
    z_lines = [_wrap(probe, t, font, len(xs) * w) for t in zs]
    top = max(map(len, col_lines)) * line_h + 2 * pad if any(xs) else 0
    left = max((probe.textlength(ln, font=font) for lines in row_lines for ln in lines), default=0)
    left = int(left) + 2 * pad if any(ys) else 0
    z_top = max(map(len, z_lines)) * line_h + 2 * pad if any(zs) else 0
    sub_size = (left + len(xs) * (w + margin) - margin, z_top + top + len(ys) * (h + margin) - margin)

    def text_block(draw: Any, lines: list[str], x: int, y: int, width: int, height: int) -> None:
        y0 = y + (height - len(lines) * line_h) // 2
        for i, line in enumerate(lines):
            draw.text(
                (x + (width - draw.textlength(line, font=font)) / 2, y0 + i * line_h), line, fill="black", font=font
            )

    subs = []
    for zi, plane in enumerate(cells):
        sub = Image.new("RGB", sub_size, "white")
        draw = ImageDraw.Draw(sub)
        text_block(draw, z_lines[zi], 0, 0, sub_size[0], z_top)
        for xi in range(len(xs)):
            text_block(draw, col_lines[xi], left + xi * (w + margin), z_top, w, top)
        for yi, row in enumerate(plane):
            y = z_top + top + yi * (h + margin)
            text_block(draw, row_lines[yi], 0, y, left, h)
            for xi, im in enumerate(row):
                if im is not None:
                    sub.paste(im.convert("RGB"), (left + xi * (w + margin), y))
        subs.append(sub)
    gap = max(margin, 2 * pad) if len(subs) > 1 else 0
    grid = Image.new("RGB", (len(subs) * (sub_size[0] + gap) - gap, sub_size[1]), "white")
    for i, sub in enumerate(subs):
        grid.paste(sub, (i * (sub_size[0] + gap), 0))
    return grid, subs, {"left": left, "top": z_top + top, "width": w, "height": h, "z_gap": gap}
