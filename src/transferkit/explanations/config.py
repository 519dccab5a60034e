"""The options of ``explain``: typed, validated at construction, the same for the Python API and the CLI."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from transferkit.options import DataOptions, OutputOptions, RuntimeOptions, build_options


class ExplainConfig(DataOptions, RuntimeOptions, OutputOptions):
    """Everything that decides what ``explain`` does. ``None`` means "chosen for you"."""

    method: list[str] | None = Field(None, description="attribution methods (images and audio: gradcam, integrated-gradients, smoothgrad; text: integrated-gradients, occlusion); default: the modality's first that can explain the model")
    target: str | None = Field(None, description="class whose score is explained (default: each input's predicted class)")
    task: str | None = Field(None, description="the task to explain, for a multi-task model")
    faithfulness: bool = Field(True, description="measure deletion and insertion curves of each method against random orders of the same parts of the input")
    random_orders: int = Field(5, ge=1, le=100, description="random orders per input that each method's curves are compared with")
    steps: int = Field(32, ge=2, le=1024, description="integrated-gradients: points on the path from the baseline to the input")
    samples: int = Field(16, ge=1, le=1024, description="smoothgrad: noisy copies averaged per input")
    noise: float = Field(0.15, gt=0, le=1, description="smoothgrad: noise deviation as a part of the input's range")
    max_inputs: int = Field(1000, gt=0, description="refuse more inputs than this (each explanation costs tens of forward and backward passes)")

    @field_validator("method")
    @classmethod
    def _names(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        names = [str(v).strip().lower() for v in value if str(v).strip()]
        if not names:
            raise ValueError("give at least one method")
        return list(dict.fromkeys(names))


def make_explain_config(**values: Any) -> ExplainConfig:
    """An ExplainConfig; problems become one ConfigError naming each option, what was given and what is allowed."""
    return build_options(ExplainConfig, "explain", **values)
