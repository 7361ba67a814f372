"""Install a model by URL (#20 item 4): a download job with progress, resumable and size-limited, SHA-256 verified,
recognised and placed in its folder, pickles never executed; and the models an infotext names that are missing.
No Gradio and no FastAPI in here."""

from webui.downloads.service import JOB_KIND, InstallRequest, check_request, describe, locked_reason, submit_install

__all__ = ["JOB_KIND", "InstallRequest", "check_request", "describe", "locked_reason", "submit_install"]
