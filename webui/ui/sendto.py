"""Send-to, as A1111 does it: PNG Info's "Send to txt2img / img2img / inpaint / extras", the galleries' Send-to
buttons, and the ↙️ button that reads generation parameters pasted into the prompt box.

From an infotext every field it names is filled (with A1111's defaults for the ones a plain infotext leaves out:
no hires fix, "Use same sampler", Clip skip 1, …). Settings without a component of their own go to "Override
settings". A `Model hash` that matches a known checkpoint switches to it; an unknown one is reported. The always-on
scripts' controls (ControlNet units, …) are restored by the scripts themselves (`ScriptsUI.paste_updates`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr
from PIL import Image, UnidentifiedImageError

from webui.generation.img2img import MASKED_CONTENT
from webui.infotext import infotext_to_request_fields, parse_infotext, read_image_infotext
from webui.outputs import open_user_image
from webui.ui.common import as_int, error_html, error_message
from webui.ui.editor_brush import sized_update
from webui.ui.page_value import PageValue
from webui.ui.quicksettings import active_title, checkpoint_titles, demo_note
from webui.ui.txt2img_tab import SAME_CHECKPOINT, SAME_SAMPLER, SAME_SCHEDULER

if TYPE_CHECKING:
    from webui.app import Application

HIRES_DEFAULTS = {
    "hr_sampler_name": SAME_SAMPLER,
    "hr_scheduler": SAME_SCHEDULER,
    "hr_checkpoint_name": SAME_CHECKPOINT,
    "hr_prompt": "",
    "hr_negative_prompt": "",
    "hr_resize_x": 0,
    "hr_resize_y": 0,
    "hr_second_pass_steps": 0,
}
EXTRA_FIELDS = ("eta", "tiling", "restore_faces", "image_cfg_scale")  # request fields without a component
GALLERY_FIELDS = ("prompt", "negative_prompt", "steps", "seed")  # what A1111's gallery buttons carry over


def has_parameters(text: str | None) -> bool:
    """True when the text is an infotext (a parameters line), not just a prompt."""
    return bool(text) and len(parse_infotext(text)) > 2


def infotext_fields(application: Application, text: str, target: str) -> dict[str, Any]:
    """Request fields (plus the UI-only "_seed_extras" / "_overrides") for the txt2img or img2img tab."""
    parsed = parse_infotext(text)
    f = infotext_to_request_fields(parsed)
    if "Batch size" in parsed:
        f["batch_size"] = as_int(parsed["Batch size"], 1)
    f.pop("sd_model_hash", None), f.pop("sd_model_name", None)
    f.setdefault("scheduler", "Automatic")
    f["_seed_extras"] = "subseed" in f or "seed_resize_from_w" in f
    f["override_settings"] = {"CLIP_stop_at_last_layers": 1, **f.get("override_settings", {})}  # none means 1
    f = tab_fields(application, f, target)
    if target == "img2img":
        f.update(inpaint_fields(parsed))
    return f


def tab_fields(application: Application, f: dict[str, Any], target: str) -> dict[str, Any]:
    """Request fields → what the txt2img or img2img tab fills: the settings as "Override settings" entries (those
    that differ from the current ones), the fields without a component there too, the defaults of the fields an
    infotext leaves out. Shared by the infotext paste and History's reuse of a job without one (history_tab)."""
    entries = []
    for option, value in f.pop("override_settings", {}).items():
        d = application.options.defs.get(option)
        if d is not None and application.options.get(option) == value:
            continue  # A1111 lists only the settings that differ from the current ones
        label = d.label if d is not None else option
        entries.append((f"{label}: {value}", json.dumps({"option": option, "value": value})))
    for name in EXTRA_FIELDS:
        value = f.pop(name, None)
        if value is not None and value is not False and not (name == "image_cfg_scale" and target == "txt2img"):
            entries.append((f"{name}: {value}", json.dumps({"field": name, "value": value})))
    f["_overrides"] = entries
    if target == "txt2img":
        f["enable_hr"] = bool(f.get("enable_hr"))
        f.update({k: v for k, v in HIRES_DEFAULTS.items() if f.get(k) is None})
        f.setdefault("slg_scale", 0.0)  # no "SLG scale": the image was made without skip-layer guidance
        f.pop("mask_blur", None)
        return f
    for key in [k for k in f if k.startswith(("hr_", "slg_")) or k == "enable_hr"]:  # img2img has no SLG
        f.pop(key)
    return f


def inpaint_fields(parsed: dict) -> dict[str, Any]:
    """The inpainting fields Easel's img2img writes: Masked content, Inpaint area, Masked area padding, Mask mode."""
    out: dict[str, Any] = {}
    if parsed.get("Masked content") in MASKED_CONTENT:
        out["inpainting_fill"] = MASKED_CONTENT.index(parsed["Masked content"])
    if "Mask blur" in parsed:  # an inpainting infotext: the fields it leaves out have their defaults
        out["inpaint_full_res"] = parsed.get("Inpaint area") == "Only masked"
        out["inpainting_mask_invert"] = int("not masked" in str(parsed.get("Mask mode", "")).lower())
    if "Masked area padding" in parsed:
        out["inpaint_full_res_padding"] = as_int(parsed["Masked area padding"], 32)
    return out


def model_for(application: Application, text: str | None) -> tuple[str | None, str | None]:
    """(checkpoint title whose short hash is the infotext's `Model hash`, or None; a "not found" message or None)."""
    parsed = parse_infotext(text) if text else {}
    wanted = str(parsed.get("Model hash") or "").strip().lower()
    if not wanted:
        return None, None
    for info in application.catalog.list():
        if info.shorthash == wanted or (len(wanted) > 10 and info.sha256.startswith(wanted)):
            return info.title, None
    return None, f"model {parsed.get('Model') or '?'} [{wanted}] not found"


def switch_model(application: Application, text: str | None):
    """Handler (after the fields are filled): (checkpoint dropdown, quicksettings message, demo note)."""
    title, missing = model_for(application, text)
    if missing:
        gr.Warning(missing)
        return gr.update(), error_html(missing), gr.update()
    if title is None or title == active_title(application):
        return gr.update(), "", gr.update()
    try:
        model = application.switch_checkpoint(title)
    except Exception as e:  # a typed load error: the previous model stays, and the user sees why
        msg = error_message(e)
        gr.Warning(msg)
        return gr.update(value=active_title(application)), error_html(msg), demo_note(application)
    return gr.update(choices=checkpoint_titles(application), value=model.info.title), "", demo_note(application)


def open_with_infotext(path: str | Path | None) -> Image.Image | None:
    """An image file as RGB, keeping its text chunks (the infotext travels with it)."""
    if not path:
        return None
    try:
        with open_user_image(path) as im:
            im.load()
            out = im.convert("RGB")
            out.info = dict(im.info)
            return out
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError):
        return None


def selected_image(gallery, results) -> Image.Image | None:
    """The gallery's selected image (the first one when none is selected), as a PNG-backed PIL image."""
    items = list(gallery or [])
    if not items:
        return None
    i = (results or {}).get("selected", 0)
    item = items[i if isinstance(i, int) and 0 <= i < len(items) else 0]
    path = item[0] if isinstance(item, (tuple, list)) else item
    return open_with_infotext(path)


def gallery_fields(image: Image.Image, target: str) -> dict[str, Any]:
    """A1111's gallery Send-to: prompt, negative prompt, steps and seed, plus the image's size (not for inpaint)."""
    text = image.info.get("parameters") if isinstance(image.info.get("parameters"), str) else None
    fields = infotext_to_request_fields(parse_infotext(text)) if text else {}
    out = {k: fields[k] for k in GALLERY_FIELDS if k in fields}
    if target == "img2img":
        out["width"], out["height"] = image.size
    return out


def script_paste(tab, text: str | None) -> list[Any]:
    """One update per `script_inputs(tab)`: what the tab's always-on scripts restore from the infotext `text`."""
    scripts = getattr(tab, "scripts", None)
    if scripts is None:
        return []
    return scripts.paste_updates(parse_infotext(text) if has_parameters(text) else {})


def script_updates(tab, text: str | None) -> dict[Any, Any]:
    """{script component: update}, for the handlers that answer with a dict."""
    return dict(zip(script_inputs(tab), script_paste(tab, text)))


def script_inputs(tab) -> list:
    scripts = getattr(tab, "scripts", None)
    return list(scripts.inputs) if scripts is not None else []


def last_infotext(application: Application) -> str | None:
    """The newest infotext in the history: what ↙️ reads when the prompt box is empty (A1111's params.txt)."""
    for job in application.history.list(limit=10):
        for text in (job.get("result") or {}).get("infotexts") or []:
            if text:
                return text
    return None


class SendTo:
    """Wires every Send-to path once all tabs exist."""

    def __init__(self, application: Application, tabs, quick, txt2img, img2img, extras, pnginfo, history=None):
        self.app, self.tabs, self.quick, self.history = application, tabs, quick, history
        self.txt2img, self.img2img, self.extras, self.pnginfo = txt2img, img2img, extras, pnginfo
        self.text = PageValue("")  # the infotext just applied, for the checkpoint switch that follows
        self.model_outputs = [quick.checkpoint, quick.message, quick.note]

    def wire(self) -> None:
        p, t2i, i2i = self.pnginfo, self.txt2img, self.img2img
        switch_args = {
            "fn": lambda text: switch_model(self.app, text),
            "inputs": [self.text],
            "outputs": self.model_outputs,
        }

        def switch(event: Any) -> None:  # the infotext's checkpoint, then what the top bar's switch updates too
            self.quick.after_switch(event.then(**switch_args), pasted=True)

        switch(p.send["txt2img"].click(self.to_txt2img, inputs=[p.raw], outputs=self.txt2img_outputs))
        for target in ("img2img", "inpaint"):
            switch(
                p.send[target].click(
                    partial_call(self.png_to_img2img, target), inputs=[p.image, p.raw], outputs=self.img2img_outputs
                )
            )
        p.send["extras"].click(
            lambda path: self.to_extras(open_with_infotext(path)), inputs=[p.image], outputs=self.extras_outputs
        )
        for source in (t2i, i2i, self.extras):  # Extras' results go to img2img / inpaint too (A1111)
            for target in ("img2img", "inpaint"):
                source.send[target].click(
                    partial_call(self.gallery_to_img2img, target),
                    inputs=[source.gallery, source.results],
                    outputs=self.img2img_outputs,
                )
        for source in (t2i, i2i):
            source.send["extras"].click(
                lambda g, r: self.to_extras(selected_image(g, r)),
                inputs=[source.gallery, source.results],
                outputs=self.extras_outputs,
            )
        if self.history is not None:
            switch(
                self.history.send.click(
                    self.history_to_txt2img, inputs=[self.history.selected], outputs=self.txt2img_outputs
                )
            )
            switch(
                self.history.send_img2img.click(
                    self.history_to_img2img, inputs=[self.history.selected], outputs=self.img2img_outputs
                )
            )
        for tab in (t2i, i2i):
            switch(
                tab.paste.click(
                    partial_call(self.paste, tab),
                    inputs=[tab.prompt],
                    outputs=[*tab.field_components, *script_inputs(tab), self.text],
                )
            )

    @property
    def txt2img_outputs(self) -> list:
        return [*self.txt2img.field_components, *script_inputs(self.txt2img), self.tabs, self.text]

    @property
    def img2img_outputs(self) -> list:
        i = self.img2img
        return [
            *i.field_components,
            i.init_image,
            i.inpaint,
            i.mode,
            i.mode_tabs,
            i.inpaint_controls,
            self.tabs,
            self.text,
            *script_inputs(i),
        ]

    @property
    def extras_outputs(self) -> list:
        return [self.extras.image, self.extras.mode, self.extras.tabs, self.tabs]

    def to_txt2img(self, text: str | None):
        if not has_parameters(text):
            gr.Warning("No generation parameters to send.")
            return {}
        fields = infotext_fields(self.app, text, "txt2img")
        return {
            **dict(zip(self.txt2img.field_components, self.txt2img.fill(fields))),
            **script_updates(self.txt2img, text),
            self.tabs: gr.Tabs(selected="txt2img"),
            self.text: text,
        }

    def img2img_updates(self, image: Image.Image, fields: dict, target: str, text: str | None = None) -> dict:
        """The img2img tab's updates; `text` (the full infotext, when there is one) restores the scripts' controls."""
        i = self.img2img
        out = {
            **dict(zip(i.field_components, i.fill(fields))),
            **script_updates(i, text),
            **i.select_mode(target),
            self.tabs: gr.Tabs(selected="img2img"),
        }
        if target == "inpaint":
            out[i.inpaint] = sized_update(
                "mask", {"background": image}, value={"background": image, "layers": [], "composite": image}
            )
        else:
            out[i.init_image] = image
        return out

    def png_to_img2img(self, target: str, path: str | None, text: str | None):
        image = open_with_infotext(path)
        if image is None:
            gr.Warning("Drop an image in PNG Info first.")
            return {}
        fields = infotext_fields(self.app, text, "img2img") if has_parameters(text) else {}
        if target == "img2img":
            fields["width"], fields["height"] = image.size
        return {**self.img2img_updates(image, fields, target, text), self.text: text or ""}

    def gallery_to_img2img(self, target: str, gallery, results):
        image = selected_image(gallery, results)
        if image is None:
            gr.Warning("There is no image in the gallery to send.")
            return {}
        text = image.info.get("parameters") if isinstance(image.info.get("parameters"), str) else None
        return {**self.img2img_updates(image, gallery_fields(image, target), target, text), self.text: ""}

    def history_to_txt2img(self, job_id: str | None):
        """History → txt2img: everything the job's infotext names, the scripts' controls (ControlNet units …)
        included; a job with no infotext (failed, cancelled) gives its request's fields with the seed it used."""
        from webui.ui.history_tab import job_fields

        job = self.app.history.get(job_id) if job_id else None
        if job is None:
            gr.Warning("Select a job in the list first.")
            return {}
        texts = (job.get("result") or {}).get("infotexts") or []
        if texts and has_parameters(texts[0]):
            return self.to_txt2img(texts[0])
        t2i = self.txt2img
        return {
            **dict(zip(t2i.field_components, t2i.fill(tab_fields(self.app, job_fields(job), "txt2img")))),
            self.tabs: gr.Tabs(selected="txt2img"),
            self.text: "",
        }

    def history_to_img2img(self, job_id: str | None):
        """History → img2img: the job's first saved image, with the fields its infotext names (the job's own, as
        History → txt2img takes it: a JPEG/WebP file or one saved without metadata has none in its PNG chunks)."""
        from webui.ui.history_tab import first_image_path, job_fields

        job = self.app.history.get(job_id) if job_id else None
        image = open_with_infotext(first_image_path(job))
        if job is None or image is None:
            gr.Warning("Select a job with a saved image first.")
            return {}
        texts = [t for t in (job.get("result") or {}).get("infotexts") or [] if has_parameters(t)]
        text = texts[0] if texts else read_image_infotext(image) or ""
        if has_parameters(text):
            fields = infotext_fields(self.app, text, "img2img")
        else:
            fields = tab_fields(self.app, job_fields(job), "img2img")
        fields["width"], fields["height"] = image.size
        return {**self.img2img_updates(image, fields, "img2img", text), self.text: text}

    def to_extras(self, image: Image.Image | None):
        if image is None:
            gr.Warning("There is no image to send.")
            return {}
        return {
            self.extras.image: image,
            self.extras.mode: "single",
            self.extras.tabs: gr.Tabs(selected="single"),
            self.tabs: gr.Tabs(selected="extras"),
        }

    def paste(self, tab, prompt: str | None):
        """↙️: an infotext in the prompt box fills every field; an empty box takes the last generation's."""
        text = prompt if (prompt or "").strip() else last_infotext(self.app)
        if not has_parameters(text):
            gr.Info("No generation parameters found in the prompt box.")
            return [gr.update() for _ in [*tab.field_components, *script_inputs(tab)]] + [""]
        return [*tab.fill(infotext_fields(self.app, text, tab.tabname)), *script_paste(tab, text), text]


def partial_call(fn, first):
    """fn with its first argument bound, keeping a plain signature Gradio can read."""

    def call(*args):
        return fn(first, *args)

    return call
