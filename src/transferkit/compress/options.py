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


class CompressConfig(DataOptions):
    """What ``compress`` makes and measures; the table options read ``data``, ``train`` and ``calibration``.
    Values are checked by ``compress`` itself before any work (each error names its flag)."""

    data: str | None = Field(None, description="labelled test data (image folder or table): every variant's accuracy is measured on it (required)")
    train: str | None = Field(None, description="labelled training data: the pruned variants' recovery fine-tune, and calibration for static int8 when --calibration is not given")
    calibration: str | None = Field(None, description="examples (labels not needed) whose activation ranges calibrate static int8 quantization")
    output: str | None = Field(None, description="folder for the variants (default MODEL/compressed); the table is also saved as MODEL/tradeoff.json")
    overwrite: bool = Field(False, description="replace the variants in a non-empty output folder")
    variants: list[str] = Field(["float", "onnx", "int8", "magnitude", "structured"], description="the variants to make: float, onnx, int8, magnitude, structured")
    quantization: str = Field("auto", description="int8 method: auto (dynamic for text, static for images with calibration data), dynamic or static")
    signed_activations: bool = Field(False, description="static int8: signed symmetric activations (S8S8) instead of U8S8; often a little more accurate, slower on many x86 CPUs")
    max_calibration: int = Field(256, ge=1, description="static int8: most calibration examples used")
    magnitude_amount: float = Field(0.5, description="fraction of weights zeroed by magnitude pruning")
    structured_amount: float = Field(0.3, description="fraction of channels / feed-forward neurons removed by structured pruning")
    heads: float = Field(0.0, description="structured pruning of BERT-style encoders: fraction of attention heads removed per layer")
    recovery_epochs: int = Field(1, description="epochs of recovery fine-tuning after pruning (needs --train; 0 = none)")
    recovery_lr: float = Field(1e-4, description="learning rate of the recovery fine-tune")
    batch_size: int = Field(32, gt=0, description="examples per forward pass for accuracy and recovery")
    threads: int | None = Field(None, description="CPU threads for every latency measurement (default: PyTorch's current count)")
    tolerance: float = Field(1e-3, description="largest logit difference allowed between PyTorch and the float ONNX export")
    seed: int = Field(0, description="seed of the calibration sample and the recovery fine-tune")
    progress: bool = Field(False, description="show progress of long steps")
