"""rank(): every candidate scored from its cached features, the raw input as a row, validation, fit --backbone auto."""

from __future__ import annotations

import typing
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import weightedtau

from conftest import TINY_IMAGE_BACKBONE
from transferkit.backbones import Backbone, create_backbone
from transferkit.data.sources import load_data
from transferkit.errors import ConfigError
from transferkit.features import FeatureCache, extract_features, run_backbone
from transferkit.features.extract import ExtractionStats
from transferkit.selection import h_score, leep_score, logme_score, nce_score, shrinkage_h_score
from transferkit.selection import ranking as ranking_module
from transferkit.selection._extract import features_and_logits
from transferkit.selection.ranking import weighted_tau
from transferkit.workflows.rank import rank

OTHER_TINY_IMAGE = "random:timm:test_resnet"


def _seeded(name: str, seed: int = 0):
    """The backbone rank builds for ``name``: random initialisations are seeded with the ranking's seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return create_backbone(name)


def test_scores_are_those_of_the_candidates_features_and_source_logits(image_folder: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    result = rank(image_folder, [TINY_IMAGE_BACKBONE, OTHER_TINY_IMAGE], cache_dir=str(cache_dir), progress=False)
    data = load_data(image_folder)
    labels = data.label_array(data.classes)
    for name in (TINY_IMAGE_BACKBONE, OTHER_TINY_IMAGE):
        backbone = _seeded(name)
        features = run_backbone(backbone, data, progress=False)
        logits = run_backbone(backbone, data, progress=False, output=lambda model, batch: model.source_logits(batch))
        row = result.row(name)
        assert row.scores["logme"] == pytest.approx(logme_score(features, labels), rel=1e-5)
        assert row.scores["hscore"] == pytest.approx(h_score(features, labels), rel=1e-4)
        assert row.scores["shrinkage_hscore"] == pytest.approx(shrinkage_h_score(features, labels), rel=1e-4)
        assert row.scores["leep"] == pytest.approx(leep_score(logits, labels, from_logits=True), rel=1e-5)
        assert row.scores["nce"] == pytest.approx(nce_score(logits, labels), abs=1e-9)
        assert set(row.seconds) >= {"load", "features", "logme", "leep", "nce", "hscore", "shrinkage_hscore"}
    raw = result.row("raw")
    assert raw.kind == "raw" and raw.description == "pixels" and raw.num_features == 32 * 32 * 3
    assert set(raw.not_applicable) == {"leep", "nce"}
    logme = [row.scores["logme"] for row in result.rows]
    assert logme == sorted(logme, reverse=True)
    assert result.best in (TINY_IMAGE_BACKBONE, OTHER_TINY_IMAGE)
    table = result.table()
    assert "LogME" in table and "raw (pixels)" in table and "n/a: LEEP, NCE for raw: the raw input has no source classifier" in table


def test_a_second_ranking_runs_no_backbone_and_fit_reuses_the_features(image_folder: Path, tmp_path: Path) -> None:
    cache_dir = str(tmp_path / "cache")
    first = rank(image_folder, [TINY_IMAGE_BACKBONE], cache_dir=cache_dir, progress=False)
    second = rank(image_folder, [TINY_IMAGE_BACKBONE], cache_dir=cache_dir, progress=False)
    assert first.row(TINY_IMAGE_BACKBONE).extraction == {"computed": 18, "from_cache": 0}
    assert second.row(TINY_IMAGE_BACKBONE).extraction == {"computed": 0, "from_cache": 18}
    assert second.row(TINY_IMAGE_BACKBONE).scores == first.row(TINY_IMAGE_BACKBONE).scores
    # the features went under the backbone's ordinary key: plain extraction finds every one of them
    stats = ExtractionStats()
    cached = extract_features(_seeded(TINY_IMAGE_BACKBONE), load_data(image_folder), cache=FeatureCache(cache_dir),
                              stats=stats, progress=False)
    assert stats.from_cache == 18 and stats.computed == 0
    fresh = extract_features(_seeded(TINY_IMAGE_BACKBONE), load_data(image_folder), cache=None, progress=False)
    np.testing.assert_allclose(cached, fresh, rtol=1e-5, atol=1e-5)


class _TwoHeads(Backbone):
    """A backbone that is not a timm model but keeps a source classifier: each output runs on its own."""

    modality = "image"
    num_features = 5

    def __init__(self) -> None:
        super().__init__("two-heads")
        generator = torch.Generator().manual_seed(0)
        self.trunk = torch.nn.Linear(12, 5)
        self.head = torch.nn.Linear(12, 7)
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=generator)

    @property
    def preprocessing(self) -> dict:
        return {"kind": "image", "flatten": 12}

    def prepare(self, item) -> torch.Tensor:
        return torch.as_tensor(np.asarray(item, dtype=np.float32).reshape(-1)[:12])

    def collate(self, prepared) -> torch.Tensor:
        return torch.stack(list(prepared))

    def forward_features(self, batch) -> torch.Tensor:
        return self.trunk(batch)

    @property
    def has_source_head(self) -> bool:
        return True

    def source_logits(self, batch) -> torch.Tensor:
        return self.head(batch)


def test_one_pass_extraction_through_the_cache_for_any_backbone_with_a_source_head(tmp_path: Path) -> None:
    from transferkit.data.sources import from_arrays
    from transferkit.selection._extract import extract

    images = np.random.default_rng(0).integers(0, 255, (10, 4, 3), dtype=np.uint8)
    data = from_arrays(np.concatenate([images, images[:3]]), ["a", "b"] * 6 + ["a"])
    backbone = _TwoHeads()
    cache = FeatureCache(tmp_path / "cache")
    first = extract(backbone, data, with_logits=True, cache=cache, progress=False)
    batch = backbone.collate([backbone.prepare(item) for item in data.items])
    with torch.inference_mode():
        np.testing.assert_allclose(first.features, backbone.forward_features(batch).numpy(), rtol=1e-6)
        np.testing.assert_allclose(first.source_logits, backbone.source_logits(batch).numpy(), rtol=1e-6)
    assert first.computed == 10  # the three repeated images ran once
    second = extract(backbone, data, with_logits=True, cache=cache, progress=False)
    assert second.computed == 0 and second.from_cache == 13
    np.testing.assert_array_equal(second.source_logits, first.source_logits)


def test_features_and_logits_in_one_pass_equal_the_two_separate_outputs() -> None:
    backbone = _seeded(TINY_IMAGE_BACKBONE).eval()
    batch = torch.randn(3, 3, 64, 64)
    with torch.inference_mode():
        both = features_and_logits(backbone, batch)
        features, logits = backbone.forward_features(batch), backbone.source_logits(batch)
    assert both.shape == (3, backbone.num_features + logits.shape[1])
    torch.testing.assert_close(both[:, : backbone.num_features], features)
    torch.testing.assert_close(both[:, backbone.num_features:], logits)


def test_a_backbone_without_source_classifier_has_no_leep_or_nce(text_csv: Path, tiny_text_model: Path,
                                                                 tmp_path: Path) -> None:
    result = rank(text_csv, [str(tiny_text_model)], cache_dir=str(tmp_path / "c"), progress=False)
    row = result.row(str(tiny_text_model))
    assert set(row.scores) == {"logme", "hscore", "shrinkage_hscore"}
    assert "no source classifier" in row.not_applicable["leep"] and "nce" in row.not_applicable
    raw = result.row("raw")
    assert raw.description.startswith("TF-IDF") and raw.num_features == 15  # 16 texts: at most N - 1 dimensions
    assert f"n/a: LEEP, NCE for {tiny_text_model}: no source classifier" in result.table()


def test_validate_measures_accuracy_and_the_weighted_tau(image_folder: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(ranking_module, "finetune_unavailable_reason", lambda: "fine-tune accuracy: not in this build")
    result = rank(image_folder, [TINY_IMAGE_BACKBONE, OTHER_TINY_IMAGE, "random:timm:test_convnext"],
                  validate=True, scores=["logme", "shrinkage_hscore"], cache_dir=str(tmp_path / "c"), progress=False)
    assert result.n_scored == 15 and result.n_test == 3
    assert len(result.rows) == 4
    for row in result.rows:
        assert 0.0 <= row.accuracy["linear_probe"] <= 1.0
        assert "finetune" not in row.accuracy and row.not_run["finetune"]
    entry = result.correlations["logme"]["linear_probe"]
    scores = [result.row(n).scores["logme"] for n in entry["candidates"]]
    accuracies = [result.row(n).accuracy["linear_probe"] for n in entry["candidates"]]
    assert entry["n"] == 4
    expected = weightedtau(scores, accuracies).statistic
    if np.isnan(expected):
        assert entry["weighted_tau"] is None
    else:
        assert entry["weighted_tau"] == pytest.approx(expected)
    assert result.correlations["logme"]["finetune"] == {"weighted_tau": None, "n": 0, "candidates": [],
                                                       "reason": "not measured"}
    table = result.table()
    assert "probe acc" in table and "not run: fine-tune accuracy: not in this build" in table


def test_finetune_is_reported_not_run_exactly_when_fit_lacks_the_strategy() -> None:
    from transferkit.config import FitConfig

    has_finetune = "finetune" in typing.get_args(FitConfig.model_fields["strategy"].annotation) \
        and "epochs" in FitConfig.model_fields
    reason = ranking_module.finetune_unavailable_reason()
    assert (reason is None) == has_finetune
    if reason is not None:
        assert "finetune" in reason


def test_validate_fine_tunes_each_candidate_when_the_engine_has_finetune(image_folder: Path, tmp_path: Path) -> None:
    reason = ranking_module.finetune_unavailable_reason()
    result = rank(image_folder, [TINY_IMAGE_BACKBONE], validate=True, scores=["logme"], cache_dir=str(tmp_path / "c"),
                  progress=False)
    row = result.row(TINY_IMAGE_BACKBONE)
    if reason is None:
        assert 0.0 <= row.accuracy["finetune"] <= 1.0 and row.seconds["finetune"] > 0
    else:
        assert row.not_run["finetune"] == reason
    assert "finetune" not in result.row("raw").accuracy


def test_rank_is_exported_lazily_by_the_package() -> None:
    import transferkit

    assert transferkit.rank is rank
    assert "rank" in dir(transferkit)


def test_weighted_tau_orders() -> None:
    assert weighted_tau([1, 2, 3, 4], [0.1, 0.2, 0.3, 0.4]) == pytest.approx(1.0)
    assert weighted_tau([1, 2, 3, 4], [0.4, 0.3, 0.2, 0.1]) == pytest.approx(-1.0)
    assert weighted_tau([1, 2], [0.1, 0.2]) is None


def test_sort_by_another_score(image_folder: Path, tmp_path: Path) -> None:
    result = rank(image_folder, [TINY_IMAGE_BACKBONE, OTHER_TINY_IMAGE], scores=["logme", "shrinkage_hscore"],
                  sort_by="shrinkage-hscore", cache_dir=str(tmp_path / "c"), progress=False)
    assert result.sort_by == "shrinkage_hscore"
    values = [row.scores["shrinkage_hscore"] for row in result.rows]
    assert values == sorted(values, reverse=True)


@pytest.mark.parametrize("options, message", [
    ({"scores": ["logme", "accuracy"]}, "unknown transferability score 'accuracy'"),
    ({"scores": ["logme"], "sort_by": "leep"}, "sort_by"),
    ({"shots": 0}, "option 'shots'"),
    ({"validate": True, "test_fraction": 1.5}, "option 'test_fraction'"),
    ({"colour": "red"}, "unknown option 'colour'"),
])
def test_option_errors_name_the_option(image_folder: Path, options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        rank(image_folder, [TINY_IMAGE_BACKBONE], progress=False, **options)


def test_wrong_candidates_fail_before_any_backbone_runs(image_folder: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    with pytest.raises(ConfigError, match="candidate 'all-MiniLM-L6-v2' takes text input"):
        rank(image_folder, [TINY_IMAGE_BACKBONE, "all-MiniLM-L6-v2"], cache_dir=str(cache_dir), progress=False)
    with pytest.raises(ConfigError, match="raw-input baseline is always a row"):
        rank(image_folder, [TINY_IMAGE_BACKBONE, "raw"], cache_dir=str(cache_dir), progress=False)
    assert not cache_dir.exists()


def test_fit_backbone_auto_uses_the_best_by_logme(image_folder: Path, tmp_path: Path, monkeypatch) -> None:
    from transferkit.api import fit

    candidates = [TINY_IMAGE_BACKBONE, OTHER_TINY_IMAGE]
    monkeypatch.setattr(ranking_module, "installed_candidates", lambda modality: candidates)
    result = fit(image_folder, backbone="auto", cache_dir=str(tmp_path / "c"), progress=False, baselines=[])
    recorded = result.config["backbone_ranking"]
    assert result.config["backbone_requested"] == "auto"
    assert [c["name"] for c in recorded["candidates"]] == sorted(candidates, key=lambda n: -next(
        c["logme"] for c in recorded["candidates"] if c["name"] == n))
    best = max(recorded["candidates"], key=lambda c: c["logme"])["name"]
    assert result.config["backbone"] == best
    assert recorded["n_examples"] == result.config["n_train"]


def test_fit_backbone_auto_without_installed_backbones_says_what_to_do(image_folder: Path, monkeypatch) -> None:
    from transferkit.api import fit

    monkeypatch.setattr(ranking_module, "installed_candidates", lambda modality: [])
    with pytest.raises(ConfigError, match="--backbone"):
        fit(image_folder, backbone="auto", progress=False)


@pytest.mark.integration
def test_pretrained_lite0_ranks_above_its_random_initialisation_on_fashion_mnist(tmp_path: Path) -> None:
    from transferkit.data.builtin import load_fashion_mnist
    from transferkit.data.splits import sample_per_class

    data = sample_per_class(load_fashion_mnist("test"), 10, seed=0)
    result = rank(data, ["efficientnet_lite0", "random:efficientnet_lite0"], cache_dir=str(tmp_path / "c"),
                  progress=False)
    pretrained, random = result.row("efficientnet_lite0"), result.row("random:efficientnet_lite0")
    for score in ("logme", "leep", "nce"):  # (with N << D both H-scores sit near classes - 1 for both)
        assert pretrained.scores[score] > random.scores[score], score
