"""Which checkpoint the Application runs: the one selected before the server answers and loaded as the first job,
switches through the queue (never under a running generation), Forge's VAE / Text Encoder choice, and option
changes (a checkpoint or VAE in them is loaded through the queue too)."""

from __future__ import annotations

import argparse
import logging
from pathlib import PureWindowsPath
from typing import TYPE_CHECKING, Any

from webui.errors import EaselError, InvalidRequest
from webui.jobs import Job

if TYPE_CHECKING:
    from webui.jobs import JobQueue
    from webui.models.catalog import CheckpointCatalog
    from webui.models.manager import LoadedModel, ModelManager
    from webui.settings import Options

log = logging.getLogger("easel")


class ApplicationModels:
    """Mixed into webui.app.Application (its attributes below are set by Application.__init__)."""

    ns: argparse.Namespace
    options: Options
    catalog: CheckpointCatalog
    models: ModelManager
    jobs: JobQueue

    def _initial_candidates(self) -> list[str]:
        """--ckpt, else the last used checkpoint, else every one found (user checkpoints before the demo)."""
        infos = self.catalog.list()
        candidates = [q for q in (self.ns.ckpt, self.options.get("sd_model_checkpoint")) if q]
        return candidates + [i.title for i in infos if not i.is_demo] + [i.title for i in infos if i.is_demo]

    def _select_initial(self) -> None:
        """Name the selected checkpoint before the server answers (the load itself runs as the first job), so
        /sdapi/v1/options and a training job posted at once see --ckpt, not "" or the first file in the folder.
        If that file then fails to load, _load_initial names the one that did."""
        for query in self._initial_candidates():
            try:
                title = self.catalog.find(query).title
            except EaselError:
                continue
            if self.options.get("sd_model_checkpoint") != title:
                self.options.set({"sd_model_checkpoint": title})
            return

    def _load_initial(self) -> LoadedModel | None:
        """--ckpt, else the last used checkpoint, else the first one that loads (user checkpoints before the demo).
        A corrupt file is skipped with a warning rather than leaving the app without a model."""
        tried: set[str] = set()
        for query in self._initial_candidates():
            if query in tried:
                continue
            tried.add(query)
            try:
                model = self.models.load(query, self.additional_modules())
            except EaselError as e:
                log.warning("could not load %s: %s", query, e.message)
                continue
            self.options.set({"sd_model_checkpoint": model.info.title})
            return model
        return self.models.active

    def additional_modules(self) -> tuple[str, ...]:
        """Forge's top-bar "VAE / Text Encoder" choice (forge_additional_modules): the files an SD3/FLUX transformer
        uses; empty means each part is picked automatically."""
        return tuple(self.options.get("forge_additional_modules") or ())

    def switch_checkpoint(self, query: str, modules: tuple[str, ...] | None = None) -> LoadedModel:
        """Switch through the queue, so a switch never happens under a running generation. `modules`: the
        VAE / Text Encoder files to load an SD3/FLUX transformer with (None: the option in force)."""
        chosen = self.additional_modules() if modules is None else modules

        def work(job: Job) -> LoadedModel:
            model = self.models.load(query, chosen)
            self.options.set({"sd_model_checkpoint": model.info.title})
            return model

        return self.jobs.run("load-checkpoint", {"checkpoint": query}, work, record=False)

    def set_options(self, changes: dict[str, Any]) -> None:
        clean = self.options.validate(dict(changes))  # the one check (422/403) for every key, before anything changes
        if clean.get("sd_vae", None) == self.options.get("sd_vae"):
            clean.pop("sd_vae")  # unchanged (a client posting every option back): nothing to check or reload
        clean = check_model_files(self.models, clean)
        title = clean.pop("sd_model_checkpoint", None)
        active = self.models.active
        # as in A1111, an unchanged value triggers nothing (clients post every option back with one edit)
        if title and not (active is not None and title == active.info.title):
            # a checkpoint and its VAE / Text Encoder files posted together load together
            self.switch_checkpoint(title, tuple(clean.get("forge_additional_modules", self.additional_modules())))
        if "sd_vae" in clean:
            vae = clean["sd_vae"]
            self.options.set({"sd_vae": vae})

            def apply_vae(job: Job) -> None:
                if self.models.active is not None:
                    self.models.apply_vae(self.models.active)

            self.jobs.run("apply-vae", {}, apply_vae, record=False)
            clean.pop("sd_vae")
        if clean:
            self.options.set(clean)


VAE_CHOICES = ("Automatic", "None", "")  # A1111's two, and "" (Automatic) as older configs have it


def check_model_files(models: ModelManager, changes: dict[str, Any]) -> dict[str, Any]:
    """The file names among option changes (POST /sdapi/v1/options, Settings, a request's override_settings) checked
    against the files there, before anything changes or is queued: an unknown VAE (`sd_vae`: Automatic, None, or a
    name /sdapi/v1/sd-vae lists, with or without its extension) or VAE / Text Encoder file
    (`forge_additional_modules`: names, never paths) is a 422 that says where they are looked for. Returns the
    changes with forge_additional_modules' names as the files' names."""
    from webui.models.catalog import VAE_EXTENSIONS, scan_vaes
    from webui.models.parts import PART_FOLDERS, module_files

    clean = dict(changes)
    vae = clean.get("sd_vae")
    if isinstance(vae, str) and vae not in VAE_CHOICES:
        vaes = models.vaes or scan_vaes(models.vae_dir)
        if not any(vae in (v.name, v.model_name, v.path.stem) for v in vaes):
            listed = ", ".join(v.name for v in vaes[:20]) + (", …" if len(vaes) > 20 else "")
            raise InvalidRequest(
                f"option sd_vae: no VAE named {vae[:100]!r}; VAEs are the {'/'.join(VAE_EXTENSIONS)} files in "
                f"{models.vae_dir} (and for Automatic a <checkpoint>.vae.safetensors beside the checkpoint). "
                f"Use Automatic, None{' or one of: ' + listed if vaes else ''}"
            )
    modules = clean.get("forge_additional_modules")
    if modules:  # only files that are there: a name is kept, never a path
        if not all(isinstance(m, str) for m in modules):
            raise InvalidRequest("option forge_additional_modules: a list of file names")
        files = module_files(models.vae_dir.parent)
        names = [PureWindowsPath(m).name for m in modules]
        unknown = [m for m, n in zip(modules, names) if n not in files and n + ".safetensors" not in files]
        if unknown:
            folders = ", ".join(f"models/{f}/" for f in sorted(PART_FOLDERS, key=lambda f: f != "VAE"))
            raise InvalidRequest(
                f"option forge_additional_modules: no such .safetensors file in {folders}: "
                f"{', '.join(m[:100] for m in unknown)[:300]}"
            )
        clean["forge_additional_modules"] = [n if n in files else n + ".safetensors" for n in names]
    return clean
