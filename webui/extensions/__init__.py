"""Extensions: discovery, the versioned public contract (api.py), hook dispatch, install/update."""
