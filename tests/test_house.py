"""The house rule (docs/architecture.md): no Python file in webui/ or extensions/ is over 400 lines; a file that
grows past it is split by responsibility into modules named for what they hold."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MAX_LINES = 400
ROOTS = ("webui", "extensions")


def house_files(repo: Path = REPO) -> list[Path]:
    """The Python files of webui/ and extensions/ that are the project's: tracked or about to be (untracked but not
    ignored), so an extension a user installed into extensions/ (ignored by .gitignore) is not counted. Without git
    (an exported tree), every file under both folders."""
    if shutil.which("git") and (repo / ".git").exists():
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", "--", *ROOTS],
            cwd=repo,
            capture_output=True,
            check=True,
        ).stdout
        names = sorted({n for n in out.decode().split("\0") if n.endswith(".py")})
        return [repo / n for n in names if (repo / n).is_file()]
    return sorted(p for root in ROOTS for p in (repo / root).rglob("*.py") if "__pycache__" not in p.parts)


def too_long(files: list[Path], limit: int = MAX_LINES) -> dict[str, int]:
    """{path relative to the repo: line count} of the files over `limit` lines."""
    counts = {f: len(f.read_text(encoding="utf-8").splitlines()) for f in files}
    return {str(f.relative_to(REPO)): n for f, n in counts.items() if n > limit}


def test_no_file_in_webui_or_extensions_is_over_400_lines():
    files = house_files()
    assert len(files) > 100  # the scan found the tree (a wrong root would pass with nothing to check)
    over = too_long(files)
    assert not over, "over the house limit of 400 lines (split by responsibility, see docs/architecture.md): " + (
        ", ".join(f"{name} ({n})" for name, n in sorted(over.items()))
    )


def test_the_check_names_a_long_file():
    long = REPO / "webui" / "settings.py"  # a real file, counted against a limit it is over
    assert too_long([long], limit=10) == {"webui/settings.py": len(long.read_text(encoding="utf-8").splitlines())}
    assert too_long([long], limit=100_000) == {}
