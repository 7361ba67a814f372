"""Prompts → conditioning (A1111 semantics)."""
