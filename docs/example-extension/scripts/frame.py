"""The example extension: frames every image in a colour set in Settings, and serves what it has seen."""

from __future__ import annotations

from webui.extensions.api import ExtensionHandle, ImageContext, StepInfo


def setup(ext: ExtensionHandle) -> None:
    seen = {"images": 0, "steps": [], "total": 0}  # this extension's state lives in setup's closure

    ext.add_setting(key="example_frame_color", default="#ff00ff", label="Frame colour (CSS colour name or #rrggbb)")
    ext.add_setting(key="example_frame_width", default=2, label="Frame width in pixels")

    def on_step_end(info: StepInfo) -> None:
        if info.step == 1:  # a new batch starts
            seen["steps"] = []
        seen["steps"].append(info.step)
        seen["total"] = info.total
        return None  # keep the latents as they are (return a tensor to replace them)

    def on_after_image(image, ctx: ImageContext):
        from PIL import ImageDraw  # import what you need inside hooks: setup stays fast

        framed = image.copy()
        width = int(ext.settings.get("example_frame_width"))
        ImageDraw.Draw(framed).rectangle(
            (0, 0, framed.width - 1, framed.height - 1), outline=ext.settings.get("example_frame_color"), width=width
        )
        seen["images"] += 1
        ext.log.debug("framed image %d (seed %d)", ctx.index, ctx.seed)
        return framed  # or None to keep the image unchanged

    def status() -> dict:
        return {
            "extension": ext.name,
            "frame_color": ext.settings.get("example_frame_color"),
            "images_framed": seen["images"],
            "last_steps": seen["steps"],
            "last_total": seen["total"],
        }

    ext.add_api_route("/status", status, methods=["GET"])  # served at /ext/example-frame/status
    ext.on("step_end", on_step_end)
    ext.on("after_image", on_after_image)
