"""Prompts → conditioning (A1111 semantics).

parser.py        the grammar: extra-network tags, AND, attention weights, BREAK (+ editing.py: [from:to:when], [a|b])
chunks.py        weighted text → 75-token chunks (comma backtrack, BREAK, embedding words); the UI token counter
conditioning.py  chunks → embeddings (weights, mean restore, clip skip, textual inversion, SDXL); per-step Schedule
guidance.py      a positive/negative Schedule pair inside diffusers' denoise loop (step callback, AND via UNet hooks)
encoder.py       the plain 77-token encoder used before the above was wired in
"""
