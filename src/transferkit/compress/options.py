"""Options of ``export``: one declaration each (type, default, bounds, help), from which the command's flags are
generated. Light on purpose (pydantic only)."""

from __future__ import annotations

from pydantic import Field

from transferkit.options import DataOptions


class ExportConfig(DataOptions):
    """What ``export`` writes and how it checks the file; the table options read the parity-check ``data``."""

    format: str = Field("onnx", description="export format: onnx")
    output: str | None = Field(None, description="file to write (default: MODEL/model.onnx)")
    overwrite: bool = Field(False, description="replace the output file if it exists")
    tolerance: float = Field(1e-3, ge=0, description="largest absolute difference of the logits allowed between PyTorch and ONNX Runtime on the check inputs")
    data: str | None = Field(None, description="check the export on these inputs (an image folder or a table) instead of generated ones")
