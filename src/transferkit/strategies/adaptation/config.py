"""``AdaptConfig``: everything that decides what ``adapt`` does; typed, validated at construction, saved with the
outputs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from transferkit._version import __version__
from transferkit.errors import ConfigError
from transferkit.options import describe_validation
from transferkit.strategies.adaptation.registry import (
    adaptation_method_names,
    get_adaptation_method,
    reference_method,
    tradeoff_method_names,
)

#: Every method ``adapt`` knows (the adaptation-method registry); ``auto`` tries several and keeps the one the
#: label-free validator prefers.
METHODS = tuple(adaptation_method_names())
METHOD_CHOICES = (*METHODS, "auto")
#: What ``auto`` tries by default (every method).
AUTO_CANDIDATES = METHODS
#: The options only some methods use (each method's registry entry lists those it uses).
METHOD_OPTIONS = ("weighting", "selection_fraction", "threshold_start", "threshold_end", "tradeoff")


class AdaptConfig(BaseModel):
    """Options of :func:`~transferkit.adapt`. ``None`` means "chosen for you"."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    source: str | None = Field(None, description="labelled source data: a folder with one sub-folder per class, or a table with a label column")
    target: str | None = Field(None, description="unlabelled target data: a folder of images, or a table with a text or image-path column")
    target_labels: str | None = Field(None, description="only to report how good the label-free choice was: the name of a label column in the target table, or a labelled dataset of the target domain; never used for any choice")
    method: Literal["source-only", "dan", "coral", "dann", "cdan", "mcc", "entropy", "self-train", "probe-mcc", "iw", "source-probe", "coral-features", "subspace", "auto"] = Field("auto", description="source-only, dan (multi-kernel MMD), coral (Deep CORAL), dann, cdan (CDAN+E), mcc, entropy, self-train (pseudo-labels), probe-mcc (MCC on the source-probe's linear head, kept near it by L2-SP), iw (instance weighting), source-probe (the linear probe on source features, no alignment), coral-features (CORAL re-colouring of cached features + probe), subspace (subspace alignment + probe), auto (try candidates, keep the validator's choice)")
    candidates: list[str] | None = Field(None, description="auto: the methods to try (default: all)")
    validator: Literal["dev", "snd", "im", "im-cal", "entropy", "ensv"] = Field("im", description="label-free score that chooses method, trade-off and checkpoint: im (information maximisation), im-cal (im after temperature scaling on the source validation data), snd (soft neighbourhood density), dev (importance-weighted source validation), entropy, ensv (agreement with the ensemble of all candidates; checkpoints by im)")
    target_prior: dict[str, float] | None = Field(None, description="the target's class mix, when it is known (e.g. {positive: 0.68, negative: 0.32}; fractions of every source class, summing to 1): every candidate's target predictions are corrected from the source class mix to it by Bayes' rule (a shift of the logits, kept in the saved model), and im / im-cal measure class balance against it instead of against uniform. Not a target label: one number per class")
    tradeoff: float | None = Field(None, ge=0, description="weight of the adaptation loss term; default: each value of the method's grid is tried and the validator picks")
    tradeoffs: dict[str, list[float]] | None = Field(None, description="trade-off weights to try per method, e.g. {dann: [0.1, 1.0]} (replaces the default grid of the methods named)")
    weighting: Literal["density-ratio", "kmm", "selection"] = Field("density-ratio", description="iw: how source examples are weighted: density ratio from a domain classifier, kernel mean matching, or selection of the source examples closest to the target")
    selection_fraction: float = Field(0.5, gt=0, le=1, description="iw with weighting=selection: part of the source kept")
    train_backbone: bool = Field(False, description="also train the backbone (fine-tuning); default: the backbone stays frozen and a bottleneck head is trained on cached features")
    backbone: str | None = Field(None, description="backbone name (`transferkit models`) or local folder; default efficientnet_lite0 for images, all-MiniLM-L6-v2 for text")
    output: str | None = Field(None, description="folder for the saved model and the adaptation report")
    overwrite: bool = Field(False, description="replace a model already in the output folder")
    label_column: str | None = Field(None, description="label column of the source table")
    text_column: str | None = Field(None, description="text column of the tables")
    path_column: str | None = Field(None, description="image-path column of the tables")
    encoding: str = Field("utf-8", description="text encoding of table files")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="seed of every random choice")
    epochs: int = Field(10, gt=0, description="training epochs per candidate (one epoch = one pass over the larger domain)")
    warm_start: bool = Field(False, description="train source-only first, then start every other trained method from it (for adapt_epochs more epochs) instead of from scratch: cheaper, and the usual practice for adversarial methods")
    adapt_epochs: int | None = Field(None, gt=0, description="with warm_start: epochs of each method after the source-only start (default: epochs)")
    min_steps_per_epoch: int = Field(50, ge=1, description="an epoch has at least this many batches (small domains are cycled), so that small data still trains for enough steps")
    batch_size: int = Field(64, gt=0, description="examples per domain in a training batch; examples per backbone forward pass")
    lr: float | None = Field(None, gt=0, description="learning rate (default 1e-3 for a frozen backbone's head; 1e-4 for the backbone with train_backbone, 10x that for the head)")
    head_lr: float | None = Field(None, gt=0, description="learning rate of the head and discriminator (default: 10 x lr with train_backbone, else lr)")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay")
    hidden: int = Field(256, gt=0, description="width of the bottleneck layer the adaptation losses align")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout after the bottleneck")
    val_fraction: float = Field(0.15, gt=0, lt=1, description="part of each source class held out (DEV validation, source accuracy)")
    threshold_start: float = Field(0.95, gt=0, lt=1, description="self-train: confidence needed for a pseudo-label at the start")
    threshold_end: float = Field(0.8, gt=0, lt=1, description="self-train: confidence needed at the end (the threshold moves linearly)")
    embedding: Literal["pca", "tsne", "none"] = Field("pca", description="2-D embedding of the before/after plot (none: no plot)")
    device: str = Field("auto", description="cpu, cuda, cuda:1, ... or auto")
    num_workers: int = Field(0, ge=0, description="data-loader worker processes")
    cache_dir: str | None = Field(None, description="feature cache folder")
    no_cache: bool = Field(False, description="do not read or write the feature cache")
    max_length: int = Field(256, gt=0, description="text backbones: maximum tokens per text")
    work_dir: str | None = Field(None, description="folder for the engine's checkpoints and logs (default: a temporary folder)")
    tracking_uri: str | None = Field(None, description="MLflow tracking URI of the run (options, metrics, report, model folder) (default: $TRANSFERKIT_TRACKING_URI, else a SQLite store in the transferkit cache); off disables MLflow")
    progress: bool = Field(True, description="show progress of long steps")

    @field_validator("candidates")
    @classmethod
    def _known_candidates(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return value
        unknown = [v for v in value if v not in METHODS]
        if unknown or not value:
            raise ValueError(f"unknown or no candidate methods {unknown}; choose from {', '.join(METHODS)}")
        return list(dict.fromkeys(value))

    @field_validator("target_prior")
    @classmethod
    def _a_class_mix(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is None:
            return value
        bad = {k: v for k, v in value.items() if not 0 < v < 1}
        if bad or len(value) < 2:
            raise ValueError(f"every class needs a fraction strictly between 0 and 1 (at least two classes); got {bad or value}")
        total = sum(value.values())
        if abs(total - 1) > 0.01:
            raise ValueError(f"the fractions sum to {total:g}; give each class's share of the target, summing to 1")
        return {k: v / total for k, v in value.items()}

    @field_validator("tradeoffs")
    @classmethod
    def _known_tradeoffs(cls, value: dict[str, list[float]] | None) -> dict[str, list[float]] | None:
        if value is None:
            return value
        for method, weights in value.items():
            if method not in tradeoff_method_names():
                raise ValueError(f"method {method!r} has no trade-off weight; give weights for "
                                 f"{', '.join(tradeoff_method_names())}")
            if not weights or any(not w >= 0 for w in weights):
                raise ValueError(f"trade-offs of {method!r} must be a non-empty list of numbers >= 0; got {weights}")
        return value

    def resolved(self, **facts: Any) -> dict[str, Any]:
        return {"transferkit_version": __version__, **self.model_dump(), **facts}

    @property
    def tries_candidates(self) -> bool:
        """``method: auto``: several candidates are tried and the validator keeps one."""
        return self.method == "auto"

    def methods_tried(self) -> list[str]:
        """The methods asked for: the candidates (default every method) with ``auto``, else the one method."""
        return list(self.candidates or AUTO_CANDIDATES) if self.tries_candidates else [self.method]

    def methods_run(self) -> set[str]:
        """The methods this run tries (source-only always: the reference every method is compared with)."""
        return set(self.methods_tried()) | {reference_method()}

    def unused_options(self) -> dict[str, str]:
        """Options set to something other than their default that no method of this run uses -> why."""
        defaults = AdaptConfig.model_construct()
        methods = self.methods_run()
        uses: dict[str, tuple[tuple[str, ...], str]] = {}
        for option in METHOD_OPTIONS:  # the methods whose registry entries declare the option
            users = tuple(m for m in adaptation_method_names() if option in get_adaptation_method(m).options)
            uses[option] = (users, f"used by method{'s' if len(users) > 1 else ''} {', '.join(users)}"
                                   f"{' with weighting selection' if option == 'selection_fraction' else ''}")
        out = {name: what for name, (users, what) in uses.items()
               if getattr(self, name) != getattr(defaults, name) and not methods & set(users)}
        if self.selection_fraction != defaults.selection_fraction and self.weighting != "selection":
            out["selection_fraction"] = uses["selection_fraction"][1]
        if self.adapt_epochs is not None and not self.warm_start:
            out["adapt_epochs"] = "used with warm_start: epochs after the source-only start"
        idle = sorted(set(self.tradeoffs or {}) - methods)
        if idle:
            out["tradeoffs"] = f"names {', '.join(idle)}, not run here"
        return out

    def warn_unused_options(self) -> None:
        """One warning naming the options this run ignores (see :meth:`unused_options`)."""
        unused = self.unused_options()
        if unused:
            import warnings

            listed = "; ".join(f"{name} ({what})" for name, what in unused.items())
            warnings.warn(f"adapt: this run ignores {listed}; leave them out, or choose methods that use them.",
                          stacklevel=2)


def make_adapt_config(**values: Any) -> AdaptConfig:
    """An :class:`AdaptConfig`, with validation problems turned into one :class:`ConfigError` naming each option."""
    try:
        return AdaptConfig(**values)
    except ValidationError as exc:
        raise ConfigError(describe_validation(exc, AdaptConfig, "adapt")) from None
