"""LoRAs: the catalog of files, prompt tags, and the service that hot-swaps adapters on a loaded checkpoint."""

from webui.lora.catalog import LoraCatalog, LoraEntry
from webui.lora.service import LoraApplied, LoraService
from webui.lora.tags import LoraTag, parse_prompt

__all__ = ["LoraApplied", "LoraCatalog", "LoraEntry", "LoraService", "LoraTag", "parse_prompt"]
