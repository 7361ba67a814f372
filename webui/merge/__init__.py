"""The checkpoint merger (A1111's Checkpoint Merger tab): weighted sum, add difference, no interpolation; streamed
tensor by tensor into a new .safetensors in the checkpoint folder. No Gradio and no FastAPI in here."""

from webui.merge.service import CONFIG_SOURCES, JOB_KIND, MergeRequest, check_request, describe, submit_merge

__all__ = ["CONFIG_SOURCES", "JOB_KIND", "MergeRequest", "check_request", "describe", "submit_merge"]
