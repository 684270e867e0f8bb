"""How the benchmarks call the toolchain: as a user does, through the installed `edgedistill` command."""

from __future__ import annotations

import sys
from pathlib import Path


def edgedistill_command() -> list[str]:
    """The console script next to this interpreter; `python -m` only where there is none. `-m` puts the current
    folder first on sys.path, so run from a checkout it would import the source tree instead of the installed
    package (which CI installs non-editable, where the source tree has no `edgedistill.cli`)."""
    exe = Path(sys.executable).with_name("edgedistill")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "edgedistill.cli.main"]
