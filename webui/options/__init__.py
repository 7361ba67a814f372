"""The declared options (A1111's names), one module per group of Settings sections; `catalog.OPTION_DEFS` has them
all in the order the Settings tab shows them. `webui.settings` holds the persisted values."""
