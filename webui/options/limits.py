"""The guards: the largest image, batch and job a request may ask for, and what the API may fetch."""

from __future__ import annotations

from webui.options.definition import OptionDef, GUARD_MAX_PIXELS


def options() -> list[OptionDef]:
    o = OptionDef
    return [
        # the guards are bounded themselves: a value of 1e30 must not switch them off
        o(
            "max_generation_pixels",
            2048 * 2048,
            "Largest width × height a request may ask for",
            "Limits",
            int,
            minimum=64 * 64,
            maximum=GUARD_MAX_PIXELS,
        ),
        o(
            "max_image_pixels",
            4096 * 4096,
            "Largest decoded input image (pixels)",
            "Limits",
            int,
            minimum=64 * 64,
            maximum=GUARD_MAX_PIXELS,
        ),
        o("api_enable_requests", False, "Allow http(s) image URLs in API requests", "API", bool),
        o(
            "model_download_max_mb",
            40 * 1024,
            "Largest model a URL install may download (MB)",
            "Limits",
            int,
            minimum=1,
            maximum=1024 * 1024,
        ),
        o("save_incomplete_images", False, "Save the partial image of an interrupted job", "Saving images", bool),
        o(
            "warn_job_seconds",
            180,
            "Warn before a job estimated to take longer than this (seconds; 0: never)",
            "Limits",
            int,
            minimum=0,
            maximum=86400,
        ),
        # the cost guard (webui/generation/cost.py): checked before a job is queued, every pass and cell counted
        o(
            "max_job_megapixel_steps",
            20000,
            "Largest job: megapixels × steps summed over every image, hires pass and "
            "script cell (20000 ≈ 3800 images of 512×512 at 20 steps)",
            "Limits",
            int,
            minimum=1,
            maximum=10_000_000,
        ),
        o(
            "max_batch_pixels",
            64 * 512 * 512,
            "Largest batch in memory: batch size × width × height (hires size included)",
            "Limits",
            int,
            minimum=64 * 64,
            maximum=8 * GUARD_MAX_PIXELS,
        ),
        o("img_max_size_mp", 200, "Largest grid (megapixels)", "Limits", int, minimum=1, maximum=2000),
        o("xyz_max_cells", 256, "Most cells an X/Y/Z plot may have", "Limits", int, minimum=1, maximum=10000),
    ]
