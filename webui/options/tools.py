"""The options of the tools beside generation: face restoration and Interrogate CLIP."""

from __future__ import annotations

from webui.options.definition import OptionDef


def options() -> list[OptionDef]:
    o = OptionDef
    return [
        # A1111's face restoration options; faces are found by a YOLOv8 ONNX detector from models/adetailer
        o("face_restoration", False, "Restore faces", "Face restoration", bool),  # A1111's label
        o(
            "face_restoration_model",
            "GFPGAN",
            "Face restoration model (models/GFPGAN, models/Codeformer)",
            "Face restoration",
            choices=("GFPGAN", "CodeFormer"),
        ),
        o(
            "code_former_weight",
            0.5,
            "CodeFormer weight (0 = maximum effect, 1 = minimum effect)",
            "Face restoration",
            float,
            minimum=0,
            maximum=1,
            step=0.01,
        ),
        o(
            "face_restoration_detector",
            "",
            "Face detector in models/adetailer (YOLOv8 ONNX; empty: the first face_*.onnx)",
            "Face restoration",
        ),
        o(
            "face_restoration_confidence",
            0.3,
            "Face detector confidence",
            "Face restoration",
            float,
            minimum=0.01,
            maximum=1,
            step=0.01,
        ),
        o(
            "interrogate_clip_model",
            "",
            "CLIP model for Interrogate CLIP (a transformers CLIPModel folder in models/interrogate; empty: the first)",
            "Interrogate",
        ),
        o("interrogate_keep_models_in_memory", False, "Keep the interrogate model in memory", "Interrogate", bool),
        o("interrogate_return_ranks", False, "Include ranks of model tags matches in results", "Interrogate", bool),
        o(
            "interrogate_blip_model",
            "",
            "BLIP caption model for Interrogate CLIP (a transformers BLIP captioning "
            "folder in models/BLIP; empty: the first)",
            "Interrogate",
        ),
        o("interrogate_clip_num_beams", 1, "BLIP: num_beams", "Interrogate", int, minimum=1, maximum=16, step=1),
        o(
            "interrogate_clip_min_length",
            24,
            "BLIP: minimum description length (tokens)",
            "Interrogate",
            int,
            minimum=1,
            maximum=128,
            step=1,
        ),
        o(
            "interrogate_clip_max_length",
            48,
            "BLIP: maximum description length (tokens)",
            "Interrogate",
            int,
            minimum=1,
            maximum=256,
            step=1,
        ),
        o(
            "interrogate_clip_dict_limit",
            1500,
            "CLIP: maximum number of lines in a word list",
            "Interrogate",
            int,
            minimum=1,
            maximum=100000,
            step=1,
        ),
    ]
