"""Prompts from file or textbox (A1111's script, on Easel's public extension API).

Each non-empty line is one generation: either a plain prompt, or A1111's options line
`--prompt "a cat" --negative_prompt "blurry" --steps 20 --cfg_scale 7 --seed 5 --sampler_name "Euler a" ...`.
Arguments keep A1111's names and order, so A1111 clients that send a list still work.
"""

from __future__ import annotations

import random
import shlex
from typing import Any

from webui.extensions.api import Script, ScriptError

MAX_LINES = 10_000  # lines of one job (each line is at least one generation; the cost guard checks the rest)


def _bool(value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise ValueError(f"expected true or false, got {value!r}")
    return value.lower() == "true"


# option → (request field, type). Output folders (A1111's outpath_*) are refused: a text file must not pick where
# files are written.
OPTIONS: dict[str, tuple[str, Any]] = {
    "prompt": ("prompt", str),
    "negative_prompt": ("negative_prompt", str),
    "styles": ("styles", str),
    "seed": ("seed", int),
    "subseed": ("subseed", int),
    "subseed_strength": ("subseed_strength", float),
    "seed_resize_from_h": ("seed_resize_from_h", int),
    "seed_resize_from_w": ("seed_resize_from_w", int),
    "sampler_name": ("sampler_name", str),
    "sampler_index": ("sampler_name", str),
    "scheduler": ("scheduler", str),
    "batch_size": ("batch_size", int),
    "n_iter": ("n_iter", int),
    "steps": ("steps", int),
    "cfg_scale": ("cfg_scale", float),
    "width": ("width", int),
    "height": ("height", int),
    "denoising_strength": ("denoising_strength", float),
    "restore_faces": ("restore_faces", _bool),
    "tiling": ("tiling", _bool),
    "do_not_save_samples": ("do_not_save_samples", _bool),
    "do_not_save_grid": ("do_not_save_grid", _bool),
    "sd_model": ("sd_model", str),
}


def parse_line(line: str) -> dict[str, Any]:
    """`--prompt "a cat" --steps 4` → {"prompt": "a cat", "steps": 4}. As in A1111, a prompt's words run to the
    next `--option`, so quotes are optional. Raises ValueError with the reason."""
    args = shlex.split(line)
    out: dict[str, Any] = {}
    pos = 0
    while pos < len(args):
        arg = args[pos]
        if not arg.startswith("--"):
            raise ValueError(f"expected an --option, got {arg!r}")
        tag = arg[2:]
        if tag not in OPTIONS:
            raise ValueError(f"unknown option {arg} (known: {', '.join('--' + k for k in OPTIONS)})")
        if pos + 1 >= len(args):
            raise ValueError(f"{arg} needs a value")
        field, kind = OPTIONS[tag]
        if tag in ("prompt", "negative_prompt"):
            words = [args[pos + 1]]
            pos += 2
            while pos < len(args) and not args[pos].startswith("--"):
                words.append(args[pos])
                pos += 1
            out[field] = " ".join(words)
            continue
        try:
            out[field] = kind(args[pos + 1])
        except ValueError:
            raise ValueError(f"{arg}: {args[pos + 1]!r} is not a valid {getattr(kind, '__name__', 'value')}") from None
        pos += 2
    if isinstance(out.get("styles"), str):
        out["styles"] = [s.strip() for s in out["styles"].split(",") if s.strip()]
    return out


def parse_lines(text: str) -> list[tuple[int, dict[str, Any]]]:
    """(line number, request fields) for every non-empty line."""
    jobs = []
    for number, raw in enumerate((text or "").splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("--"):
            try:
                jobs.append((number, parse_line(line)))
            except ValueError as e:
                raise ScriptError(f"line {number}: {e}") from None
        else:
            jobs.append((number, {"prompt": line}))
    return jobs


def _join(line_part: str, base: str, position: str) -> str:
    if not base:
        return line_part
    return f"{line_part} {base}" if position == "start" else f"{base} {line_part}"


def _variant(request: Any, fields: dict[str, Any], where: str) -> Any:
    """A validated copy of the request with `fields` changed; bad values are a ScriptError naming the field."""
    try:
        return type(request).model_validate({**request.model_dump(), **fields})
    except ValueError as e:  # pydantic's ValidationError is a ValueError
        errors = e.errors() if hasattr(e, "errors") else [{"loc": (), "msg": str(e)}]
        raise ScriptError(
            f"{where}: " + "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in errors)
        ) from None


class PromptsFromFile(Script):
    title = "Prompts from file or textbox"
    visibility = "both"
    always_on = False
    args = ("checkbox_iterate", "checkbox_iterate_batch", "prompt_position", "prompt_txt")

    def ui(self, is_img2img: bool) -> dict[str, Any]:
        import gradio as gr

        iterate = gr.Checkbox(False, label="Iterate seed every line")
        same = gr.Checkbox(False, label="Use same random seed for all lines")
        position = gr.Radio(["start", "end"], value="start", label="Insert prompts at the")
        text = gr.Textbox(
            label="List of prompt inputs",
            lines=4,
            elem_id=f"{'img2img' if is_img2img else 'txt2img'}_prompts_from_file_text",
        )
        upload = gr.File(label="Upload prompt inputs", type="binary", file_types=[".txt"])
        try:
            upload.upload(lambda data: (data or b"").decode("utf-8", "replace"), inputs=[upload], outputs=[text])
        except Exception:  # ui() is also called outside a Blocks to describe the arguments
            pass
        return {
            "checkbox_iterate": iterate,
            "checkbox_iterate_batch": same,
            "prompt_position": position,
            "prompt_txt": text,
        }

    def planned_requests(self, request: Any, **args: Any) -> list[Any]:
        """One request per line (Easel checks the job's total cost before queueing it)."""
        return list(self._variants(request, **args))

    def run(self, runner: Any, request: Any, **args: Any) -> Any:
        results = []
        for variant in self._variants(request, **args):
            result = runner.generate(variant)
            results.append(result)
            if getattr(result, "interrupted", False):
                break
        return combine(results)

    def _variants(
        self,
        request: Any,
        *,
        checkbox_iterate: bool = False,
        checkbox_iterate_batch: bool = False,
        prompt_position: str = "start",
        prompt_txt: str = "",
        **_: Any,
    ):
        if str(prompt_txt or "").count("\n") >= MAX_LINES:
            raise ScriptError(f"more than {MAX_LINES} lines: split the list into several jobs")
        jobs = parse_lines(prompt_txt)
        if not jobs:
            raise ScriptError("no prompts: write one prompt (or one line of --options) per line")
        seed = int(request.seed)
        if (checkbox_iterate or checkbox_iterate_batch) and seed == -1:
            seed = random.randrange(4294967294)
        for number, fields in jobs:
            fields = dict(fields)
            fields.setdefault("seed", seed)
            model = fields.pop("sd_model", None)
            if model:
                fields["override_settings"] = {**request.override_settings, "sd_model_checkpoint": model}
            if fields.get("prompt"):
                fields["prompt"] = _join(fields["prompt"], request.prompt, prompt_position)
            if fields.get("negative_prompt"):
                fields["negative_prompt"] = _join(fields["negative_prompt"], request.negative_prompt, prompt_position)
            fields.update(script_name=None, script_args=[])
            variant = _variant(request, fields, f"line {number}")
            yield variant
            if checkbox_iterate:
                seed += variant.batch_size * variant.n_iter


def combine(results: list[Any]) -> Any:
    """One result from several: every image (without per-line grids) with its own infotext."""
    images, texts, prompts, negatives, seeds = [], [], [], [], []
    for r in results:
        first = int(r.info.get("index_of_first_image", 0) or 0) if len(r.images) > 1 else 0
        images += r.images[first:]
        texts += r.infotexts[first:]
        prompts += r.info.get("all_prompts", [])
        negatives += r.info.get("all_negative_prompts", [])
        seeds += r.info.get("all_seeds", [])
    info = {
        **results[0].info,
        "all_prompts": prompts,
        "all_negative_prompts": negatives,
        "all_seeds": seeds,
        "infotexts": texts,
        "index_of_first_image": 0,
    }
    return results[0].model_copy(
        update={
            "images": images,
            "infotexts": texts,
            "info": info,
            "paths": [p for r in results for p in r.paths],
            "warnings": [w for r in results for w in r.warnings],
            "interrupted": any(r.interrupted for r in results),
        }
    )


def setup(ext: Any) -> None:
    ext.add_script(PromptsFromFile())
