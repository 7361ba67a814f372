"""Every declared option, in the order the Settings tab shows its sections (extensions add theirs at load)."""

from __future__ import annotations

from webui.options import limits, model, performance, saving, tools
from webui.options.definition import OptionDef

OPTION_DEFS: dict[str, OptionDef] = {
    d.key: d for d in [*model.options(), *saving.options(), *performance.options(), *limits.options(), *tools.options()]
}
