"""Per-step conditioning inside diffusers' own denoise loop (StableDiffusion, Img2Img, Inpaint and XL pipelines).

How diffusers 0.42's loop works (pipeline_stable_diffusion.py, the others alike): before the loop, with CFG,
`prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds])` (SDXL also concatenates the pooled
`add_text_embeds`). After step i it calls `callback_on_step_end(pipe, i, t, kwargs)` and continues with
`callback_outputs.pop("prompt_embeds", prompt_embeds)` (SDXL: also "add_text_embeds"): what the callback returns
is what step i+1 uses. `kwargs` holds only the names in `callback_on_step_end_tensor_inputs`, and the pipeline
validates that list against `_callback_tensor_inputs`; the returned dict is read whatever was listed.

So prompt editing and alternation ride on the step callback: `GuidedConditioning.callback()` swaps in the next
step's [negative, positive] when the schedule changes. Composable diffusion (AND) needs one UNet pass per
sub-prompt, which the loop can't express; `GuidedConditioning.composable(unet)` widens each UNet call's batch with
forward hooks and folds the results back, so that the pipeline's own CFG formula yields A1111's
uncond + cfg · Σ wᵢ (condᵢ − uncond).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable

import torch

from webui.prompts.conditioning import Schedule, pad_to_same_length


class GuidedConditioning:
    """A positive and a negative Schedule for one pipeline call of `batch_size` images.

    Each Schedule holds 1 prompt (used for every image) or `batch_size` prompts (one per image)."""

    def __init__(self, positive: Schedule, negative: Schedule, batch_size: int):
        for s in (positive, negative):
            if len(s.groups) not in (1, batch_size):
                raise ValueError(f"{len(s.groups)} prompts for a batch of {batch_size}")
        self.positive, self.negative, self.batch_size = positive, negative, batch_size
        self.step = 0  # the 0-based step the next UNet call belongs to

    def _image_group(self, schedule: Schedule, b: int) -> list[tuple[int, float]]:
        return schedule.groups[b if len(schedule.groups) > 1 else 0]

    def _rows(self, schedule: Schedule, table: torch.Tensor | None) -> torch.Tensor | None:
        if table is None:
            return None
        # composable prompts: the first sub-prompt stands in (composable() replaces the whole positive half)
        return table[[self._image_group(schedule, b)[0][0] for b in range(self.batch_size)]]

    def embeds(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(positive, negative), each [batch_size, T, D], padded to the same T with empty chunks."""
        pos = self._rows(self.positive, self.positive.at(step))
        neg = self._rows(self.negative, self.negative.at(step))
        return pad_to_same_length(pos, neg, self.positive.empty)

    def pooled(self, step: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        pos = self._rows(self.positive, self.positive.pooled_at(step))
        neg = self._rows(self.negative, self.negative.pooled_at(step))
        return None if pos is None else (pos, neg)

    @property
    def pad_conds(self) -> bool:
        """Whether the positive and negative differ in length, so `embeds` pads one of them (the lengths are the
        same at every step). A1111 pads only with its "Pad prompt/negative prompt" option, and then writes
        "Pad conds: True" into the infotext; by default it runs the two halves as separate UNet passes instead."""
        return self.positive.at(0).shape[1] != self.negative.at(0).shape[1]

    def key(self, step: int) -> tuple:
        return self.positive.key(step), self.negative.key(step)

    def pipeline_kwargs(self) -> dict:
        """The conditioning arguments for `pipe(...)`, for step 0. Call once per pipeline call (it restarts the
        step count)."""
        self.step = 0
        pos, neg = self.embeds(0)
        kwargs = {
            "prompt_embeds": pos,
            "negative_prompt_embeds": neg,
            "callback_on_step_end_tensor_inputs": ["latents", "prompt_embeds"],
        }
        pooled = self.pooled(0)
        if pooled is not None:
            kwargs.update(pooled_prompt_embeds=pooled[0], negative_pooled_prompt_embeds=pooled[1])
            kwargs["callback_on_step_end_tensor_inputs"].append("add_text_embeds")
        return kwargs

    def callback(self, inner: Callable | None = None) -> Callable:
        """callback_on_step_end: runs `inner` (progress, previews, interrupt), then hands the loop the next step's
        conditioning when it changes."""

        def on_step_end(pipe, i, t, kwargs):
            out = inner(pipe, i, t, kwargs) if inner is not None else kwargs
            out = dict(out) if out is not None else {}
            self.step = i + 1
            if self.key(i + 1) != self.key(i):
                like = kwargs.get("prompt_embeds")
                device = like.device if like is not None else pipe.unet.device
                dtype = like.dtype if like is not None else pipe.unet.dtype
                cfg = pipe.do_classifier_free_guidance
                pos, neg = self.embeds(i + 1)
                out["prompt_embeds"] = (torch.cat([neg, pos]) if cfg else pos).to(device, dtype)
                pooled = self.pooled(i + 1)
                if pooled is not None:
                    out["add_text_embeds"] = (torch.cat([pooled[1], pooled[0]]) if cfg else pooled[0]).to(device, dtype)
            return out

        return on_step_end

    @contextmanager
    def composable(self, unet: torch.nn.Module):
        """While active, each CFG UNet call (batch [negative ×B, positive ×B]) runs as [negative ×B, every
        sub-prompt of every image], and its output is folded back to [u, u + Σ w (c − u)]. No-op unless the
        positive schedule uses AND / weights, or without CFG (then the first sub-prompt is used)."""
        if not self.positive.is_composable:
            yield
            return
        state: dict = {}
        b_size = self.batch_size

        def widen(module, args, kwargs):
            x = args[0] if args else kwargs["sample"]
            ehs = kwargs.get("encoder_hidden_states")
            if ehs is None or x.shape[0] != 2 * b_size:
                return None
            table = self.positive.at(self.step)
            pooled_table = self.positive.pooled_at(self.step)
            neg = ehs[:b_size]
            index, tracks, plan = list(range(b_size)), [], []
            for b in range(b_size):
                plan.append([])
                for track, weight in self._image_group(self.positive, b):
                    plan[-1].append((len(index), weight))
                    index.append(b_size + b)
                    tracks.append(track)
            rows = table[tracks].to(neg.device, neg.dtype)
            rows, neg = pad_to_same_length(rows, neg, self.positive.empty)
            idx = torch.tensor(index, device=x.device)

            def pick(v):
                if isinstance(v, (tuple, list)):  # e.g. ControlNet's down_block_additional_residuals
                    return type(v)(pick(item) for item in v)
                return v[idx.to(v.device)] if torch.is_tensor(v) and v.dim() > 0 and v.shape[0] == x.shape[0] else v

            args = tuple(pick(a) for a in args)
            kwargs = {k: pick(v) for k, v in kwargs.items()}
            kwargs["encoder_hidden_states"] = torch.cat([neg, rows])
            added = kwargs.get("added_cond_kwargs")
            if added:
                added = {k: pick(v) for k, v in added.items()}
                if pooled_table is not None and "text_embeds" in added:
                    te = added["text_embeds"]
                    added["text_embeds"] = torch.cat([te[:b_size], pooled_table[tracks].to(te.device, te.dtype)])
                kwargs["added_cond_kwargs"] = added
            state["plan"] = plan
            return args, kwargs

        def fold(module, args, kwargs, output):
            plan = state.pop("plan", None)
            if plan is None:
                return output
            sample = output[0] if isinstance(output, tuple) else output.sample
            u = sample[:b_size]
            mixed = torch.stack(
                [u[b] + sum(w * (sample[r] - u[b]) for r, w in entries) for b, entries in enumerate(plan)]
            )
            folded = torch.cat([u, mixed])
            if isinstance(output, tuple):
                return (folded, *output[1:])
            output.sample = folded
            return output

        handles = [
            unet.register_forward_pre_hook(widen, with_kwargs=True),
            unet.register_forward_hook(fold, with_kwargs=True),
        ]
        try:
            yield
        finally:
            for h in handles:
                h.remove()


def schedule_steps(scheduler, steps: int) -> int:
    """The step count to build schedules with: A1111 counts model calls, which second-order samplers (Heun, DPM2,
    DPM++ SDE: diffusers `order == 2`) double."""
    return steps * 2 if getattr(scheduler, "order", 1) == 2 else steps
