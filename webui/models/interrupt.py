"""Interrupt checks inside the UNet and the VAE, so Interrupt stops a job within a block's time, not a step's.

diffusers' pipelines look at nothing between the start and the end of a denoising step, and a step at 2048² on a
CPU takes minutes; the VAE decode of such an image is one long call too (or a loop over tiles). Torch forward
pre-hooks on the blocks the work is made of (ResNet blocks, transformer blocks, down/up samplers, and the VAE's
encoder/decoder, which a tiled VAE calls once per tile) raise `Interrupted` as soon as the job's flag is set.

They are registered for one job only and removed when it ends, on errors too (`InterruptChecks` is a context
manager), so a loaded model carries nothing between jobs. A UNet compiled with `cpu_compile` is left alone: a hook
inside a compiled graph would cost a recompile; its job is checked between steps and in the VAE as before.
"""

from __future__ import annotations

from typing import Any

from webui.errors import Interrupted

# the units of work a hook sits in front of (class names, so every family's blocks count without importing them)
_BLOCKS = frozenset(
    {
        "ResnetBlock2D",
        "Transformer2DModel",
        "BasicTransformerBlock",
        "Downsample2D",
        "Upsample2D",
        "Encoder",
        "Decoder",
        "SD3Transformer2DModel",
        "JointTransformerBlock",
        "FluxTransformerBlock",
        "FluxSingleTransformerBlock",
    }
)


class InterruptChecks:
    """`with InterruptChecks(control) as checks: checks.attach(unet, vae)`: raise Interrupted inside their forward
    once `control.interrupted`; `stopped_in` says which part ("unet", "vae" …) noticed it."""

    def __init__(self, control: Any):
        self.control = control
        self.stopped_in: str | None = None
        self._handles: list = []
        self._attached: set[int] = set()

    def attach(self, *modules: Any) -> None:
        """Hook every block of these modules (once each; None and non-modules are skipped)."""
        from webui.models.compile import compile_state

        for module in modules:
            if module is None or not hasattr(module, "modules") or id(module) in self._attached:
                continue
            if compile_state(module).enabled:
                continue
            self._attached.add(id(module))
            part = "vae" if hasattr(module, "decoder") and hasattr(module, "encoder") else "unet"
            check = self._checker(part)
            for sub in module.modules():
                if type(sub).__name__ in _BLOCKS:
                    self._handles.append(sub.register_forward_pre_hook(check))

    def _checker(self, part: str):
        control = self.control

        def check(module, args):
            if control.interrupted:
                self.stopped_in = self.stopped_in or part
                raise Interrupted("interrupted")

        return check

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._attached.clear()

    def __enter__(self) -> "InterruptChecks":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
