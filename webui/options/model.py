"""The Stable Diffusion and sampler options: which checkpoint, VAE and text encoders, prompt handling, the sampler's
parameters and defaults."""

from __future__ import annotations

from webui.options.definition import OptionDef


def options() -> list[OptionDef]:
    o = OptionDef
    return [
        o("sd_model_checkpoint", "", "Stable Diffusion checkpoint", "Stable Diffusion"),
        # A1111's option: the settings shown in the top bar (any option's name; unknown names are left out)
        o(
            "quicksettings_list",
            ["sd_model_checkpoint"],
            "Quicksettings list (settings pinned to the top bar)",
            "User interface",
            list,
            reload_ui=True,
        ),
        o(
            "sd_checkpoints_limit",
            2,
            "Checkpoints to keep in RAM",
            "Stable Diffusion",
            int,
            minimum=1,
            maximum=10,
            step=1,
        ),
        # a byte budget on top of A1111's count (#18): an SD 3.5 Large or FLUX model is many SD 1.x ones in size
        o(
            "sd_checkpoints_ram_mb",
            0,
            "RAM for cached checkpoints, in MB (0: only the count above; the active model always stays)",
            "Stable Diffusion",
            int,
            minimum=0,
            maximum=4 * 2**20,
            step=256,
        ),
        o("sd_vae", "Automatic", "SD VAE", "Stable Diffusion"),
        # Forge's top-bar "VAE / Text Encoder" choice for SD3/FLUX transformer files (file names; empty: automatic)
        o("forge_additional_modules", [], "VAE / Text Encoder (text encoders: SD3, FLUX)", "Stable Diffusion", list),
        o(
            "t5_max_length",
            0,
            "T5 max length in tokens (SD3, FLUX; 0: the model's own: FLUX dev 512, schnell 256, SD 3 256)",
            "Stable Diffusion",
            int,
            choices=(0, 256, 512),
        ),
        o("CLIP_stop_at_last_layers", 1, "Clip skip", "Stable Diffusion", int, minimum=1, maximum=12, step=1),
        o(
            "emphasis",
            "Original",
            "Emphasis mode for (word:1.1)",
            "Stable Diffusion",
            choices=("Original", "No norm", "None"),
        ),
        o(
            "comma_padding_backtrack",
            20,
            "Prompt word wrap length limit (tokens)",
            "Stable Diffusion",
            int,
            minimum=0,
            maximum=74,
            step=1,
        ),
        o("use_old_scheduling", False, "Use old prompt editing timelines", "Compatibility", bool),
        o(
            "flow_shift",
            0.0,
            "Shift for SD3/FLUX sampling (0: the model's own; FLUX dev's follows the image size)",
            "Sampler parameters",
            float,
            minimum=0,
            maximum=100,
            step=0.05,
        ),
        o(
            "eta_noise_seed_delta",
            0,
            "Eta noise seed delta (ENSD)",
            "Sampler parameters",
            int,
            minimum=0,
            maximum=2**32 - 1,
        ),
        o(
            "eta_ancestral",
            1.0,
            "Eta for ancestral samplers",
            "Sampler parameters",
            float,
            minimum=0,
            maximum=1,
            step=0.01,
        ),
        o("txt2img_default_sampler", "Euler a", "Default sampler", "Sampler parameters"),
        o(
            "txt2img_default_steps",
            20,
            "Default sampling steps",
            "Sampler parameters",
            int,
            minimum=1,
            maximum=150,
            step=1,
        ),
    ]
