"""Interrogate (A1111's /sdapi/v1/interrogate and img2img's "Interrogate CLIP"): webui/interrogate/service.py."""
