"""Write and read A1111 "infotext": the generation parameters stored with every image.

Layout (A1111 v1.10, `modules/infotext_utils.py` / `processing.create_infotext`)::

    <prompt, possibly several lines>
    Negative prompt: <negative prompt, possibly several lines>     (omitted when empty)
    Steps: 20, Sampler: Euler a, CFG scale: 7, ..., Version: easel-0.1.0

PNG files carry it in the tEXt/iTXt chunk ``parameters``; JPEG and WEBP in the EXIF UserComment.
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from webui import VERSION_TAG

FIELD_ORDER: list[str] = [
    "Steps",
    "Sampler",
    "Schedule type",
    "CFG scale",
    "Distilled CFG Scale",
    "Image CFG scale",
    "Seed",
    "Face restoration",
    "Size",
    "Model hash",
    "Model",
    "Batch size",
    "Batch pos",  # A1111 wrote these two after Model (batches of 2+)
    "VAE hash",
    "VAE",
    "Variation seed",
    "Variation seed strength",
    "Seed resize from",
    "Denoising strength",
    "Conditional mask weight",
    "Clip skip",
    "ENSD",
    "Token merging ratio",
    "Token merging ratio hr",
    "Init image hash",
    "RNG",
    "Tiling",
]

SCHEDULE_SUFFIXES: tuple[str, ...] = ("SGM Uniform", "Karras", "Exponential", "Uniform", "Beta", "Automatic")

PARAM_RE = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_KEY_RUN = re.compile(r"[\w \-/]+")
_FIRST_WORD = re.compile(r"\w")
_VALUE_RE = re.compile(r'\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def param_pairs(line: str) -> list[tuple[str, str]]:
    """Exactly PARAM_RE.findall(line) (A1111's parameter regex), in linear time.

    Written by hand because the regex is quadratic: where a run of key characters is not followed by ':' (a long
    prompt on the last line, say), findall re-scans that run from each of its positions: 16 KB took 2.8 s and
    1 MB would take hours of one request's CPU. A run is decided by its first word character: a later start in
    the same run reaches the same end and gives a shorter key, so if the first fails, all of them fail."""
    pairs: list[tuple[str, str]] = []
    pos, end = 0, len(line)
    while pos < end:
        run = _KEY_RUN.search(line, pos)
        if run is None:
            break
        word = _FIRST_WORD.search(line, run.start(), run.end())
        if word is None or run.end() - word.start() < 2 or run.end() >= end or line[run.end()] != ":":
            pos = run.end() + (run.end() == run.start())
            continue
        value = _VALUE_RE.match(line, run.end() + 1)
        assert value is not None  # it matches the empty string too
        pairs.append((line[word.start() : run.end()], value.group(1)))
        pos = value.end() if value.end() > pos else pos + 1
    return pairs


_SIZE_RE = re.compile(r"^(\d+)x(\d+)$")
_NEGATIVE = "Negative prompt:"
_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286


# ---------------------------------------------------------------- writing


def format_value(value: object) -> str:
    """Text for one value. Floats with an integral value print without ".0" (7.0 -> "7"); other floats
    use Python's shortest round-trip form (7.5 -> "7.5"); bools print True/False like A1111."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        return repr(value)
    return str(value)


def quote(value: object) -> str:
    """JSON-quote (like A1111's ``quote``) a value that would break the "Key: value, ..." line: one that
    contains `,` `:` `"` or a newline, has leading/trailing whitespace the parser would lose, or is empty
    (written `""`, which A1111's parser reads back as an empty string)."""
    text = format_value(value)
    if not text or any(c in text for c in ',:"\n\r') or text != text.strip():
        return json.dumps(text, ensure_ascii=False)
    return text


def _ordered_items(params: Mapping[str, object]) -> list[tuple[str, object]]:
    known = [(k, params[k]) for k in FIELD_ORDER if k in params]
    extras = [(k, v) for k, v in params.items() if k not in FIELD_ORDER and k != "Version"]
    version = params["Version"] if "Version" in params else VERSION_TAG
    return known + extras + [("Version", version)]


def build_infotext(prompt: str, negative_prompt: str, params: Mapping[str, object]) -> str:
    """Compose an infotext. Keys with value None are skipped; "Version" is always last and defaults to
    Easel's tag (pass ``"Version": None`` to leave it out). Raises ValueError for a key that would
    corrupt the line (contains `,` `:` or a newline)."""
    pairs = []
    for key, value in _ordered_items(params):
        if value is None:
            continue
        if any(c in key for c in ",:\n\r"):
            raise ValueError(f"infotext key {key!r} cannot contain ',', ':' or a newline")
        pairs.append(f"{key}: {quote(value)}")
    lines = []
    if prompt:
        lines.append(prompt)
    if negative_prompt:
        lines.append(f"{_NEGATIVE} {negative_prompt}")
    lines.append(", ".join(pairs))
    return "\n".join(lines)


# ---------------------------------------------------------------- parsing


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        try:
            decoded = json.loads(value)
        except ValueError:
            return value
        return decoded if isinstance(decoded, str) else value
    return value


def parse_infotext(text: str) -> dict[str, object]:
    """Parse an infotext the way A1111's ``parse_generation_parameters`` does.

    Returns {"Prompt", "Negative prompt", every "Key": "value" as strings}. A value like ``512x768`` also
    yields "<Key>-1" and "<Key>-2" (Size, Hires resize, Seed resize from...). The last line is read as
    parameters only when the A1111 regex finds at least 3 pairs in it; otherwise it belongs to the prompt.
    """
    *lines, last = text.strip().replace("\r\n", "\n").split("\n")
    if len(param_pairs(last)) < 3:
        lines.append(last)
        last = ""

    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    for line in lines:
        if not negative_lines and line.lstrip().startswith(_NEGATIVE):
            rest = line.lstrip()[len(_NEGATIVE) :]
            negative_lines.append(rest[1:] if rest.startswith(" ") else rest)
        elif negative_lines:
            negative_lines.append(line)
        else:
            prompt_lines.append(line)

    result: dict[str, object] = {}
    for key, raw in param_pairs(last):
        value = _unquote(raw)
        result[key] = value
        size = _SIZE_RE.match(value)
        if size:
            result[f"{key}-1"], result[f"{key}-2"] = size.group(1), size.group(2)
    result["Prompt"] = "\n".join(prompt_lines)
    result["Negative prompt"] = "\n".join(negative_lines)
    return result


def split_legacy_sampler(name: str) -> tuple[str, str | None]:
    """ "DPM++ 2M Karras" -> ("DPM++ 2M", "Karras"); a name without a schedule suffix -> (name, None)."""
    for suffix in SCHEDULE_SUFFIXES:
        if name.endswith(" " + suffix) and len(name) > len(suffix) + 1:
            return name[: -len(suffix) - 1].rstrip(), suffix
    return name, None


def _convert(parsed: Mapping[str, object], key: str, kind: type) -> Any:
    """parsed[key] converted to int/float/bool/str, or None when missing or unreadable."""
    raw = parsed.get(key)
    if raw is None:
        return None
    text = str(raw).strip()
    try:
        if kind is bool:
            return text.lower() in ("true", "1", "yes", "on")
        if kind is int:
            return int(float(text)) if "." in text or "e" in text.lower() else int(text)
        if kind is float:
            return float(text)
    except ValueError:
        return None
    return text


# infotext key -> (request field, type); applied when the key is present and readable
_REQUEST_FIELDS: dict[str, tuple[str, type]] = {
    "Steps": ("steps", int),
    "CFG scale": ("cfg_scale", float),
    "Image CFG scale": ("image_cfg_scale", float),
    "Seed": ("seed", int),
    "Size-1": ("width", int),
    "Size-2": ("height", int),
    "Variation seed": ("subseed", int),
    "Variation seed strength": ("subseed_strength", float),
    "Seed resize from-1": ("seed_resize_from_w", int),
    "Seed resize from-2": ("seed_resize_from_h", int),
    "Denoising strength": ("denoising_strength", float),
    "Tiling": ("tiling", bool),
    "Model hash": ("sd_model_hash", str),
    "Model": ("sd_model_name", str),
    "Hires upscale": ("hr_scale", float),
    "Hires steps": ("hr_second_pass_steps", int),
    "Hires upscaler": ("hr_upscaler", str),
    "Hires resize-1": ("hr_resize_x", int),
    "Hires resize-2": ("hr_resize_y", int),
    "Hires sampler": ("hr_sampler_name", str),
    "Hires schedule type": ("hr_scheduler", str),
    "Hires prompt": ("hr_prompt", str),
    "Hires negative prompt": ("hr_negative_prompt", str),
    "Hires checkpoint": ("hr_checkpoint_name", str),
    "Mask blur": ("mask_blur", int),
    "Eta": ("eta", float),
    "Distilled CFG Scale": ("distilled_cfg_scale", float),  # Forge's FLUX dev guidance
    "SLG scale": ("slg_scale", float),  # SD 3/3.5 skip-layer guidance (generation/slg.py), only when on
    "SLG layers": ("slg_layers", str),  # "7 8 9": the request reads it as [7, 8, 9]
    "SLG start": ("slg_start", float),
    "SLG end": ("slg_end", float),
}
# infotext key -> (option name in override_settings, type)
_OVERRIDE_FIELDS: dict[str, tuple[str, type]] = {
    "Clip skip": ("CLIP_stop_at_last_layers", int),
    "ENSD": ("eta_noise_seed_delta", int),
    "RNG": ("randn_source", str),
    "Token merging ratio": ("token_merging_ratio", float),
    "Token merging ratio hr": ("token_merging_ratio_hr", float),
    "Step cache": ("step_cache_interval", int),
    "Conditional mask weight": ("inpainting_mask_weight", float),
    "CPU attention": ("cpu_attention", str),  # OpenVINO's attention kernel under the torch UNet (attention_kernel.py)
    "CPU backend": ("cpu_backend", str),  # Easel's optional OpenVINO UNet (generation/cpu_backend.py)
    "VAE precision": ("cpu_vae_precision", str),  # Easel's opt-in bf16 decode: pasting it back reproduces the image
    "Shift": ("flow_shift", float),  # SD 3/FLUX flow-matching shift (the setting, when not the model's own)
    "T5 max length": ("t5_max_length", int),  # SD 3/FLUX T5 sequence length, when not the model's own (Easel's name)
}


def infotext_to_request_fields(parsed: Mapping[str, object]) -> dict[str, Any]:
    """Map a `parse_infotext` result to A1111 API request fields (txt2img/img2img bodies).

    Unreadable values are left out rather than guessed. A legacy sampler name such as "DPM++ 2M Karras"
    is split into sampler_name + scheduler when there is no "Schedule type". "Model hash" and "Model" come
    back as sd_model_hash / sd_model_name for the caller to resolve into a checkpoint.
    """
    fields: dict[str, Any] = {
        "prompt": str(parsed.get("Prompt", "")),
        "negative_prompt": str(parsed.get("Negative prompt", "")),
    }
    for key, (name, kind) in _REQUEST_FIELDS.items():
        value = _convert(parsed, key, kind)
        if value is not None:
            fields[name] = value

    sampler = _convert(parsed, "Sampler", str)
    schedule = _convert(parsed, "Schedule type", str)
    if sampler is not None:
        if schedule is None:
            sampler, schedule = split_legacy_sampler(sampler)
        fields["sampler_name"] = sampler
    if schedule is not None:
        fields["scheduler"] = schedule
    if "hr_scale" in fields or "hr_resize_x" in fields or "hr_upscaler" in fields:
        fields["enable_hr"] = True
    if "Face restoration" in parsed:
        fields["restore_faces"] = True

    overrides = {}
    for key, (option, kind) in _OVERRIDE_FIELDS.items():
        value = _convert(parsed, key, kind)
        if value is not None:
            overrides[option] = value
    if parsed.get("Precision") in ("bf16", "fp32"):  # Easel's CPU UNet precision; a GPU's "fp16" is no setting
        overrides["cpu_precision"] = parsed["Precision"]
    if overrides:
        fields["override_settings"] = overrides
    return fields


# ---------------------------------------------------------------- images


def _decode_user_comment(data: bytes | str) -> str | None:
    """Decode an EXIF UserComment: 8-byte charset prefix, then the text."""
    if isinstance(data, str):
        return data
    prefix, body = data[:8], data[8:]
    if prefix == b"UNICODE\0":
        if body[:2] in (b"\xfe\xff", b"\xff\xfe"):
            return body.decode("utf-16")  # BOM tells the byte order
        # No BOM: mostly-ASCII text has its zero bytes first in big-endian (A1111/piexif) and second in
        # little-endian, so count where the zeros sit.
        zeros_even = body[0::2].count(0)
        zeros_odd = body[1::2].count(0)
        codec = "utf-16-le" if zeros_odd > zeros_even else "utf-16-be"
        return body[: len(body) // 2 * 2].decode(codec, errors="replace")
    if prefix in (b"ASCII\0\0\0", b"\0" * 8):
        return body.decode("utf-8", errors="replace").rstrip("\0")
    if prefix == b"JIS\0\0\0\0\0":
        return body.decode("shift_jis", errors="replace").rstrip("\0")
    return data.decode("utf-8", errors="replace").rstrip("\0") or None


def read_image_infotext(image: Image.Image) -> str | None:
    """The infotext stored in an image: PNG text "parameters", else the EXIF UserComment (JPEG/WEBP),
    else a JPEG comment. None when there is none."""
    info = image.info or {}
    value = info.get("parameters")
    if isinstance(value, str) and value:
        return str(value)
    try:
        comment = image.getexif().get_ifd(_EXIF_IFD).get(_USER_COMMENT)
    except Exception:  # malformed EXIF must not break reading the image
        comment = None
    if comment:
        text = _decode_user_comment(comment)
        if text:
            return text
    jpeg_comment = info.get("comment")
    if isinstance(jpeg_comment, bytes):
        jpeg_comment = jpeg_comment.decode("utf-8", errors="replace")
    return jpeg_comment or None


def pnginfo_for(infotext: str | None, extra: Mapping[str, str] | None = None) -> PngInfo:
    """PNG text chunks: "parameters" (tEXt, or iTXt when not Latin-1) plus any `extra` chunks."""
    info = PngInfo()
    if infotext:
        info.add_text("parameters", infotext)
    for key, value in (extra or {}).items():
        info.add_text(key, value)
    return info


def exif_bytes_for(infotext: str) -> bytes:
    """EXIF block (with the "Exif\\0\\0" header) whose UserComment is "UNICODE\\0" + UTF-16-BE, as A1111 writes."""
    exif = Image.Exif()
    exif.get_ifd(_EXIF_IFD)[_USER_COMMENT] = b"UNICODE\0" + infotext.encode("utf-16-be")
    return exif.tobytes()
