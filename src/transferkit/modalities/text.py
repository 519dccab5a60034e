"""Texts: a column of a table, or a list of strings."""

from __future__ import annotations

import hashlib
import warnings
from typing import Any, Callable, Sequence

import numpy as np

from transferkit.modalities.base import Modality, RawEncoder

#: A text longer than this many characters is warned about (the encoder truncates it to its token limit).
LONG_TEXT_CHARS = 100_000
#: Characters of a text that the report's examples keep.
EXAMPLE_TEXT_CHARS = 400
#: Texts of very different lengths, for export parity checks when no data is given.
SAMPLE_TEXTS = (
    "ok",
    "a short sentence",
    "A somewhat longer sentence, with punctuation and a few more words in it.",
    "The exported graph must handle any number of texts and any length up to the tokenizer's limit, so the check "
    "uses texts of very different lengths in one batch.",
)


class RawTfidf(RawEncoder):
    """Texts -> sparse TF-IDF of word uni- and bi-grams (sublinear term frequency, vocabulary of the training
    data, at most 100,000 terms)."""

    standardize = False
    description = "TF-IDF + logistic regression"

    def fit(self, dataset: Any) -> "RawTfidf":
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.vectorizer_ = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1, max_features=100_000)
        self.vectorizer_.fit(list(dataset.items))
        return self

    def transform(self, dataset: Any) -> Any:
        return self.vectorizer_.transform(list(dataset.items))


class TextModality(Modality):
    name = "text"
    description = "texts: a column of a table (CSV, TSV, JSON lines, Parquet, ...) or a list of strings"
    default_backbone = "all-MiniLM-L6-v2"
    input_hint = "a table with a text column"
    items_are_files = False
    strings_are_items = True
    mixes_batches = False
    augment_summary = "token masking"
    word_variants = True
    embeds_label_names = True
    few_shot_strategies = ("contrastive",)
    channels_last = False
    prefers_static_quantization = False
    service_request = "json"
    onnx_inputs = ("input_ids", "attention_mask")

    def item_keys(self, items: Sequence[Any]) -> list[str]:
        return [hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest() for text in items]

    def check_items(self, dataset: Any) -> None:
        from transferkit.data.validation import DataWarning

        long = [row for row, text in zip(dataset.row_ids, dataset.items) if len(text) > LONG_TEXT_CHARS]
        if long:
            warnings.warn(
                f"{long[0]}: text longer than {LONG_TEXT_CHARS:,} characters ({len(long)} such); it is truncated "
                "to the encoder's maximum length.",
                DataWarning,
                stacklevel=3,
            )

    def batch_order(self, items: Sequence[Any]) -> np.ndarray | None:
        """Shortest texts first, so that each batch carries less padding."""
        return np.argsort([len(t) for t in items], kind="stable")

    def backbone_options(self, *, max_length: int | None = None, image_size: int | None = None) -> dict[str, Any]:
        return {"max_length": max_length}

    def options_from_preprocessing(self, preprocessing: dict[str, Any]) -> dict[str, Any]:
        return {"max_length": preprocessing["max_length"], "normalize": preprocessing["normalize"]}

    def raw_encoder(self, **options: Any) -> RawTfidf:
        return RawTfidf()

    def augmentation(self, preset: str, auto_augment: str | None = None) -> Any:
        from transferkit.data.augmentation import TEXT_PRESETS
        from transferkit.errors import ConfigError

        if auto_augment:
            raise ConfigError("option 'auto_augment' (RandAugment / TrivialAugment) applies to images, not text.")
        return TEXT_PRESETS[preset]

    def training_inputs(self, backbone: Any, augmentation: Any, batch_mixing: Any = None
                        ) -> tuple[Callable[[Any], Any], Any]:
        return backbone.prepare, None if augmentation.is_identity else augmentation.build(backbone.tokenizer)

    def example(self, item: Any) -> dict[str, Any]:
        text = str(item)
        return {"text": text if len(text) <= EXAMPLE_TEXT_CHARS else text[:EXAMPLE_TEXT_CHARS] + "..."}

    def examples_html(self, entries: Sequence[dict], escape: Callable[[Any], str]) -> str:
        return "<ul>" + "".join(f"<li>{escape(i.get('text', ''))} <span class='muted'>({escape(i.get('row_id', ''))})"
                                "</span></li>" for i in entries) + "</ul>"

    def example_cell_html(self, entry: dict, escape: Callable[[Any], str]) -> str:
        return escape(entry.get("text", ""))

    def distinctive_terms(self, items: Sequence[Any], groups: np.ndarray, count: int = 8) -> dict[int, list[str]]:
        """Per group, the ``count`` words (and word pairs) whose mean TF-IDF weight in the group most exceeds
        their mean over every text."""
        from sklearn.feature_extraction.text import TfidfVectorizer

        groups = np.asarray(groups)
        try:
            weights = TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=20000, sublinear_tf=True,
                                      stop_words="english").fit(items)
        except ValueError:  # no word occurs twice: nothing distinguishes a group
            return {}
        matrix = weights.transform(items)
        vocabulary = weights.get_feature_names_out()
        overall = np.asarray(matrix.mean(axis=0)).ravel()
        terms = {}
        for group in sorted(set(groups.tolist()) - {-1}):
            inside = np.asarray(matrix[np.flatnonzero(groups == group)].mean(axis=0)).ravel() - overall
            best = np.argsort(-inside)[:count]
            terms[group] = [str(vocabulary[i]) for i in best if inside[i] > 0]
        return terms

    def warm_up_item(self) -> Any:
        return "warm-up"

    def explainer(self) -> Any:
        from transferkit.explanations.text import TextExplainer

        return TextExplainer()

    def sample_items(self, count: int, seed: int = 0) -> tuple[list[Any], str]:
        return [SAMPLE_TEXTS[i % len(SAMPLE_TEXTS)] for i in range(count)], "sample texts of varied length"
