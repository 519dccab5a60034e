"""Options of ``report``: one declaration each, from which the command's flags are generated. Light on purpose
(pydantic only)."""

from __future__ import annotations

from pydantic import Field

from transferkit.options import Options


class ReportConfig(Options):
    """Where ``report`` writes the page."""

    output: str | None = Field(None, description="HTML file to write (default: RUN_DIR/report.html, written again each time)")
    overwrite: bool = Field(False, description="replace the output file if it exists")
