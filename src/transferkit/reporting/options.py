"""Options of ``report``: one declaration each, from which the command's flags are generated. Light on purpose
(pydantic only)."""

from __future__ import annotations

from pydantic import Field

from transferkit.options import Options

#: Mistakes the report explains unless told otherwise (each costs tens of forward and backward passes).
EXPLAINED_MISTAKES = 4


class ReportConfig(Options):
    """Where ``report`` writes the page."""

    output: str | None = Field(None, description="HTML file to write (default: RUN_DIR/report.html, written again each time)")
    overwrite: bool = Field(False, description="replace the output file if it exists")
    explain_mistakes: int = Field(EXPLAINED_MISTAKES, ge=0, le=12, description="test mistakes the model was surest of that the explanations section explains (heat maps or highlighted words, with a faithfulness check); bounds the report's build time; 0: none")
