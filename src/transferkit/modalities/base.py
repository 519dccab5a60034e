"""What a modality is: the questions every kind of input answers, whatever it holds.

A modality (image, text; audio next) says how its items are stored, checked and fingerprinted, how the raw-input
baseline encodes them, which backbone a run uses when it names none and with which options, which augmentation a
preset means and where it applies (before or after batching), how a report shows an example, and what the HTTP
service accepts. A :class:`~transferkit.data.Dataset` names its modality by a string; the verbs ask the registered
entry (``get_modality(dataset.modality)``) instead of testing that string.

Entries import their heavy libraries (PIL, scikit-learn, torch) inside the hooks, so that the registry itself is
light and ``import transferkit`` stays fast.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, Literal, Sequence

import numpy as np


class RawEncoder(ABC):
    """The raw-input baseline's encoder of one modality: ``fit`` learns what it needs from the training data (a
    vocabulary, a pixel grid), ``transform`` gives a feature matrix ``(N, D)`` (dense, or scipy sparse)."""

    #: Whether the probe on these features standardises them (dense pixels yes, sparse TF-IDF no).
    standardize: bool = False
    #: How the baseline is described in results ("pixels + logistic regression").
    description: str = ""

    @abstractmethod
    def fit(self, dataset: Any) -> "RawEncoder":
        """Learn from ``dataset`` (a :class:`~transferkit.data.Dataset` of this modality); returns ``self``."""

    @abstractmethod
    def transform(self, dataset: Any) -> Any:
        """The features of ``dataset``, ``(N, D)``."""


class Modality(ABC):
    """One kind of input. Subclasses set the class attributes and answer every abstract method; the registry
    (:mod:`transferkit.modalities`) holds one instance per name."""

    #: The registry key, and the value of ``Dataset.modality`` and of a saved model's ``modality``.
    name: str = ""
    #: One line for listings.
    description: str = ""
    #: The backbone a run uses when it names none (a short name of ``transferkit models``).
    default_backbone: str = ""
    #: What to give a model of this modality, said in an error when data of another modality was given.
    input_hint: str = ""
    #: Whether items not given as an array are file paths (read, checked and hashed from disk).
    items_are_files: bool = False
    #: Whether a plain string given to ``predict`` is an item itself (a text) rather than the path of one.
    strings_are_items: bool = False
    #: Whether batches can be mixed (mixup, cutmix) and, when not, what ``--augment`` does instead.
    mixes_batches: bool = False
    augment_summary: str = ""
    #: Whether ``distill.variants`` (word-dropout copies of each example for the teachers) applies.
    word_variants: bool = False
    #: Whether this modality's backbones embed texts, so that class names and descriptions have an embedding in
    #: the same space as the items (the label-name prior of the probe, the zero-shot row).
    embeds_label_names: bool = False
    #: Training strategies ``fit --strategy auto`` measures on folds of the training data, beside the probe, when
    #: there are few labels per class (what tends to beat the probe there for this kind of input).
    few_shot_strategies: tuple[str, ...] = ()
    #: Fixed augmented views of an example (``view_dataset`` makes a dataset of one of them) that the linear probe
    #: takes as extra training rows when there are few labels per class (``--probe-views``).
    probe_views: tuple[str, ...] = ()
    #: Whether the backbone runs in channels-last memory format on the CPU (faster convolutions).
    channels_last: bool = False
    #: Whether ``compress --method auto`` prefers static int8 when calibration data is given (convolutions).
    prefers_static_quantization: bool = False
    #: What the HTTP service's ``/predict`` takes: ``files`` (multipart file parts) or ``json`` (a JSON body).
    service_request: Literal["files", "json"] = "json"
    #: Names of an exported ONNX graph's inputs: the tensor the backbone's ``collate`` gives (one name), or the
    #: keys of the token mapping it gives (a sequence axis each, up to the backbone's ``max_length``).
    onnx_inputs: tuple[str, ...] = ()

    # --- items ------------------------------------------------------------------------------------------------
    def view_dataset(self, dataset: Any, view: str) -> Any:
        """``dataset`` with every item replaced by its ``view`` (one of :attr:`probe_views`)."""
        raise NotImplementedError(f"{self.name} data has no augmented views")

    @abstractmethod
    def item_keys(self, items: Sequence[Any]) -> list[str]:
        """A content hash (hex) per item given as a list (arrays are hashed by the dataset itself)."""

    @abstractmethod
    def check_items(self, dataset: Any) -> None:
        """Item checks before any long work: a DataError naming the unusable items, or a warning for suspicious
        ones (``role`` checks, class counts and labels are the dataset's and the task's)."""

    def batch_order(self, items: Sequence[Any]) -> np.ndarray | None:
        """The order feature extraction visits ``items`` in (``None``: as given)."""
        return None

    def files_dataset(self, paths: Sequence[str], origin: str) -> Any:
        """Files given one by one (``predict`` inputs) as an unlabelled dataset of this modality."""
        raise NotImplementedError(f"{self.name} items are not files")

    # --- backbones --------------------------------------------------------------------------------------------
    @abstractmethod
    def backbone_options(self, *, max_length: int | None = None, image_size: int | None = None) -> dict[str, Any]:
        """The ``create_backbone`` options of this modality among those a run sets."""

    @abstractmethod
    def options_from_preprocessing(self, preprocessing: dict[str, Any]) -> dict[str, Any]:
        """The ``create_backbone`` options that reproduce a saved backbone's preprocessing."""

    # --- baselines and training -------------------------------------------------------------------------------
    @abstractmethod
    def raw_encoder(self, **options: Any) -> RawEncoder:
        """A new, unfitted raw-input encoder (options: ``image_side`` for images)."""

    @abstractmethod
    def augmentation(self, preset: str, auto_augment: str | None = None) -> Any:
        """The augmentation a preset (already checked) means; ``auto_augment`` is an image-only override."""

    @abstractmethod
    def training_inputs(self, backbone: Any, augmentation: Any, batch_mixing: Any = None
                        ) -> tuple[Callable[[Any], Any], Any]:
        """``(prepare, batch_transform)`` of training examples: the per-example preparation (with the
        augmentation where it applies per example) and the transform of collated batches (``None`` for none)."""

    # --- reports ----------------------------------------------------------------------------------------------
    @abstractmethod
    def example(self, item: Any) -> dict[str, Any]:
        """What ``examples.json`` keeps of one item (a text, a thumbnail)."""

    @abstractmethod
    def examples_html(self, entries: Sequence[dict], escape: Callable[[Any], str]) -> str:
        """HTML of a few examples of a class (entries as :meth:`example` gives them, with ``row_id``)."""

    @abstractmethod
    def example_cell_html(self, entry: dict, escape: Callable[[Any], str]) -> str:
        """HTML of one example in a table cell (the hardest misclassified examples)."""

    def distinctive_terms(self, items: Sequence[Any], groups: np.ndarray, count: int = 8) -> dict[int, list[str]]:
        """Words that set each group of ``items`` apart (``groups``: a group id per item; ``-1`` is no group), for
        ``explore``'s cluster summaries; ``{}`` for a modality without words."""
        return {}

    # --- serving ----------------------------------------------------------------------------------------------
    def decode_upload(self, data: bytes, name: str, settings: Any) -> Any:
        """One uploaded file (``service_request == "files"``) as an item the backbone prepares; every limit of
        ``settings`` (a :class:`~transferkit.serving.settings.ServeConfig`) checked first. Raises the service's
        HTTP errors (413 over a limit, 422 undecodable), naming ``name``."""
        raise NotImplementedError(f"{self.name} requests are not files")

    @abstractmethod
    def warm_up_item(self) -> Any:
        """A synthetic item the service predicts once before it accepts requests."""

    @abstractmethod
    def sample_items(self, count: int, seed: int = 0) -> tuple[list[Any], str]:
        """``count`` synthetic items of varied shapes and how they are described (export parity checks when no
        data is given)."""

    # --- explanations -----------------------------------------------------------------------------------------
    def explainer(self) -> Any:
        """The :class:`~transferkit.explanations.base.Explainer` of this modality's inputs (``explain``, the report's
        explanations, the service's ``/explain``)."""
        from transferkit.errors import ConfigError

        raise ConfigError(f"explain: {self.name} models cannot be explained yet.")


#: Names of the hooks every entry answers (the contract test checks each registered entry against them).
HOOKS = ("item_keys", "check_items", "batch_order", "files_dataset", "backbone_options", "options_from_preprocessing",
         "raw_encoder", "augmentation", "training_inputs", "example", "examples_html", "example_cell_html",
         "decode_upload", "warm_up_item", "sample_items", "explainer")
ATTRIBUTES = ("name", "description", "default_backbone", "input_hint", "items_are_files", "strings_are_items",
              "mixes_batches", "augment_summary", "word_variants", "channels_last", "prefers_static_quantization",
              "service_request", "onnx_inputs")


def check_files(dataset: Any, check: Callable[[Any], str | None], noun: str) -> None:
    """Run ``check`` (a problem description or ``None``) on each file of ``dataset``; the problems found are one
    DataError naming the first five files (with their rows) and how many more. Items that are not file paths (decoded
    clips, arrays) are skipped: ``check`` is only called on strings and paths."""
    import os

    from transferkit.errors import DataError

    problems = []
    for item, row in zip(dataset.items, dataset.row_ids):
        if not isinstance(item, (str, os.PathLike)):
            continue
        problem = check(item)
        if problem:
            where = item if row == item else f"{row} ({item})"
            problems.append(f"{where} {problem}")
    if problems:
        more = f"\n  ... and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise DataError(f"{dataset.origin}: {len(problems)} {noun} file(s) cannot be used:\n  "
                        + "\n  ".join(problems[:5]) + more + "\nRemove or replace them and run again.")

