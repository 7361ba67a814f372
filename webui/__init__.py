"""Easel: a Stable Diffusion web UI built on diffusers."""

VERSION = "0.1.0"
VERSION_TAG = f"easel-{VERSION}"  # written as the infotext's "Version:" value
