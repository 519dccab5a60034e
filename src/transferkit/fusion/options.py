"""Options of ``fuse``: one declaration each (type, default, help), from which the command's flags are generated.
Each method uses the options that apply to it (the help says which); its registry entry picks them. Light on
purpose (pydantic only)."""

from __future__ import annotations

from pydantic import Field

from transferkit.options import DataOptions


class FuseConfig(DataOptions):
    """What ``fuse`` combines and how; the table options read ``val``, ``train`` and ``test``."""

    method: str | None = Field(None, description="interpolate, soup, ensemble or stack (required): interpolate mixes pretrained and fine-tuned weights, alpha chosen on --val; soup averages fine-tuned runs; ensemble averages probabilities; stack concatenates several backbones' features, then fits a linear probe")
    val: str | None = Field(None, description="validation data (image folder or table): chooses alpha, the greedy soup, the ensemble weights, the probe's C")
    train: str | None = Field(None, description="training data: interpolate fits the pretrained end's linear probe on it (unless --pretrained); stack fits its probe on it")
    test: str | None = Field(None, description="extra labelled data evaluated at every step and reported (never used for choices), e.g. a shifted domain")
    output: str | None = Field(None, description="folder to save the fused model in")
    overwrite: bool = Field(False, description="replace a model already in the output folder")
    pretrained: str | None = Field(None, description="interpolate: the pretrained end as a linear-probe model folder (default: the fine-tuned model's backbone, pretrained, with a probe fitted on --train)")
    alphas: list[str] | None = Field(None, description="interpolate: the alphas to try, numbers in [0, 1] (default 0, 0.1, ..., 1)")
    soup: str = Field("greedy", description="soup: greedy (add a run only if validation accuracy improves) or uniform")
    weighting: str = Field("fitted", description="ensemble: fitted (weights minimising validation log-loss) or uniform")
    backbones: list[str] | None = Field(None, description="stack: the backbone names")
    from_rank: str | None = Field(None, description="stack: take the backbones from a ranking saved by `transferkit rank DATA --json > ranking.json`")
    top: int | None = Field(None, description="stack: use the best N backbones of the ranking (or the first N of --backbones)")
    reduce: int | None = Field(None, description="stack: keep N PCA components of each backbone's features (default: all features)")
    task: str | None = Field(None, description="stack: what a label is (classification, the default; regression: ridge on the stacked features; multilabel: per-label logistic regression); the other methods take the task of their models")
    batch_size: int = Field(64, gt=0, description="examples per forward pass")
    device: str = Field("auto", description="cpu, cuda, cuda:N or auto")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="seed of the probes' folds and of PCA")
