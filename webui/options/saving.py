"""The options for saving images and grids: formats, file and folder names, output folders."""

from __future__ import annotations

from webui.options.definition import OptionDef


def options() -> list[OptionDef]:
    o = OptionDef
    return [
        o("samples_save", True, "Always save all generated images", "Saving images", bool),
        o("samples_format", "png", "File format for images", "Saving images", choices=("png", "jpg", "webp")),
        o("samples_filename_pattern", "", "Images filename pattern ([seed] when empty)", "Saving images"),
        o("save_to_dirs", True, "Save images to a date subdirectory", "Saving images", bool),
        o("grid_save", True, "Always save all generated image grids", "Saving images", bool),
        o("grid_format", "png", "File format for grids", "Saving images", choices=("png", "jpg", "webp")),
        o("return_grid", True, "Show grid in gallery", "Saving images", bool),
        o(
            "enable_pnginfo",
            True,
            "Save text information about generation parameters as chunks to png files",
            "Saving images",
            bool,
        ),
        o(
            "jpeg_quality",
            80,
            "Quality for saved jpeg and webp images",
            "Saving images",
            int,
            minimum=1,
            maximum=100,
            step=1,
        ),
        o("webp_lossless", False, "Use lossless compression for webp images", "Saving images", bool),
        o(
            "grid_extended_filename",
            False,
            "Add extended info (seed, prompt) to filename when saving grid",
            "Saving images",
            bool,
        ),
        o("grid_save_to_dirs", True, "Save grids to a subdirectory", "Saving images", bool),
        o("directories_filename_pattern", "[date]", "Directory name pattern", "Saving images"),
        o(
            "directories_max_prompt_words",
            8,
            "Max prompt words for [prompt_words] pattern",
            "Saving images",
            int,
            minimum=1,
            maximum=20,
            step=1,
        ),
        o(
            "outdir_samples",
            "",
            "Output directory for images; if empty, defaults to three directories below",
            "Paths",
            path=True,
        ),
        o(
            "outdir_txt2img_samples",
            "outputs/txt2img-images",
            "Output directory for txt2img images",
            "Paths",
            path=True,
        ),
        o(
            "outdir_img2img_samples",
            "outputs/img2img-images",
            "Output directory for img2img images",
            "Paths",
            path=True,
        ),
        o(
            "outdir_extras_samples",
            "outputs/extras-images",
            "Output directory for images from extras tab",
            "Paths",
            path=True,
        ),
        o(
            "outdir_grids",
            "",
            "Output directory for grids; if empty, defaults to two directories below",
            "Paths",
            path=True,
        ),
        o("outdir_txt2img_grids", "outputs/txt2img-grids", "Output directory for txt2img grids", "Paths", path=True),
        o("outdir_img2img_grids", "outputs/img2img-grids", "Output directory for img2img grids", "Paths", path=True),
    ]
