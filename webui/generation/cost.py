"""The cost guard: what a job will cost, estimated before it is queued, and a 422 when that is over the limits.

A job is one request, or the cells a dropdown script (X/Y/Z plot, prompts from file) will generate. For each we count
the images (batch_size × n_iter), the pixels and steps of every pass (the hires second pass included) and the grid
the job would assemble. The limits are options, bounded themselves (webui/settings.py, section "Limits"):

- `max_generation_pixels`: width × height of any pass;
- `max_batch_pixels`: batch_size × the largest pass's pixels (what one batch holds in memory at once);
- `img_max_size_mp`: the grid of a multi-image job, in megapixels (A1111's option of the same name);
- `max_job_megapixel_steps`: the work, megapixels × steps summed over every image, pass and cell.

Sizes left empty are estimated at the active checkpoint's native size (native.UNKNOWN_NATIVE, 1024, when unknown or
when the request picks another checkpoint). The generation code keeps its own checks at run time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from webui.errors import InvalidRequest
from webui.generation.requests import hires_size as target_size
from webui.generation.requests import size_or_native
from webui.generation.slg import extra_steps


def area_text(pixels: int) -> str:
    """A pixel limit as people think of it: "2048×2048" for a square number of pixels (every default limit is one),
    otherwise "4.2 megapixels"; never "4194304 pixels"."""
    side = math.isqrt(int(pixels))
    if side * side == int(pixels):
        return f"{side}×{side}"
    return f"{pixels / 1e6:.3g} megapixels" if pixels >= 100_000 else f"{int(pixels):,} pixels"


@dataclass
class PassCost:
    width: int
    height: int
    steps: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


@dataclass
class RequestCost:
    images: int
    passes: list[PassCost]
    batch_pixels: int
    grid_pixels: int  # 0: no grid is made

    @property
    def megapixel_steps(self) -> float:
        return self.images * sum(p.pixels * p.steps for p in self.passes) / 1e6


def hires_size(req: Any, width: int, height: int) -> tuple[int, int]:
    """The hires target of `req` (requests.hires_size: as the hires pass computes it)."""
    return target_size(width, height, float(req.hr_scale), int(req.hr_resize_x or 0), int(req.hr_resize_y or 0))


def request_cost(req: Any, native: int, *, grid: bool) -> RequestCost:
    """The cost of one txt2img/img2img request. `grid`: the job saves or returns a grid of its images."""
    width, height = size_or_native(req, native)
    steps = int(req.steps)
    passes = [PassCost(width, height, steps + extra_steps(req))]  # SD 3.5 skip-layer guidance: first pass only
    if getattr(req, "enable_hr", False) and not hasattr(req, "init_images"):
        w, h = hires_size(req, width, height)
        passes.append(PassCost(w, h, int(req.hr_second_pass_steps or steps)))
    images = int(req.batch_size) * int(req.n_iter)
    largest = max(p.pixels for p in passes)
    grid_pixels = 0
    if grid and images > 1:
        rows = max(1, min(images, round(math.sqrt(images))))  # outputs.grid_rows
        grid_pixels = rows * math.ceil(images / rows) * largest
    return RequestCost(
        images=images, passes=passes, batch_pixels=int(req.batch_size) * largest, grid_pixels=grid_pixels
    )


def check_job_cost(
    requests: Iterable[Any],
    get_option: Callable[[str], Any],
    native_for: Callable[[Any], int],
    *,
    grid_for: Callable[[Any], bool],
) -> float:
    """Raise InvalidRequest (422) when a job of these requests is over a limit; return its megapixel-steps.
    `native_for(req)` is the size an empty width/height stands for; `grid_for(req)` whether that request makes a
    grid of its images."""
    max_pixels = int(get_option("max_generation_pixels"))
    max_batch = int(get_option("max_batch_pixels"))
    max_grid = int(get_option("img_max_size_mp")) * 1_000_000
    budget = int(get_option("max_job_megapixel_steps"))
    total, cells, grids = 0.0, 0, 0
    for req in requests:
        cells += 1
        cost = request_cost(req, native_for(req), grid=grid_for(req))
        for i, p in enumerate(cost.passes):
            if p.pixels > max_pixels:
                what = "the hires size" if i else "size"
                raise InvalidRequest(
                    f"{what} {p.width}×{p.height} is over the limit of {area_text(max_pixels)} "
                    f"(setting max_generation_pixels)"
                )
        if cost.batch_pixels > max_batch:
            big = max(cost.passes, key=lambda p: p.pixels)
            raise InvalidRequest(
                f"a batch of {req.batch_size} images of {big.width}×{big.height} is more than one "
                f"batch may hold in memory ({area_text(max_batch)} in all; setting "
                f"max_batch_pixels): use a smaller batch size and a larger batch count"
            )
        total += cost.megapixel_steps
        grids = max(grids, cost.grid_pixels)
    if total > budget:
        where = f" in {cells} cells" if cells > 1 else ""
        raise InvalidRequest(
            f"this job is about {total:.0f} megapixel-steps of work{where} (images × width × height "
            f"× steps, hires included), over the limit of {budget} (setting max_job_megapixel_steps): "
            f"use fewer images, steps or a smaller size"
        )
    if grids > max_grid:
        raise InvalidRequest(
            f"a grid of this job would be {grids / 1e6:.0f} megapixels, over the limit of "
            f"{max_grid // 1_000_000} (setting img_max_size_mp): make fewer images or set "
            f"do_not_save_grid"
        )
    return total
