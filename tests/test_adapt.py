"""Domain adaptation: methods on synthetic shifted domains, validators, weights, alignment, diagnostics, saving."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from _adapt_helpers import PixelBackbone, shifted_domain
from transferkit.data.sources import from_arrays
from transferkit.errors import ConfigError, DataError
from transferkit.evaluation.validators import (
    ValidationData,
    dev_risk,
    entropy_score,
    calibrated_im_score,
    information_maximization_score,
    snd_score,
    validate,
)

torch.set_num_threads(1)

SHIFT = (1.0, 1.5)


@pytest.fixture(scope="module")
def domains():
    source_images, source_labels = shifted_domain(300, seed=1)
    target_images, target_labels = shifted_domain(300, shift=SHIFT, seed=2)
    source = from_arrays(source_images, source_labels, origin="source")
    target = from_arrays(target_images, origin="target")
    return source, target, target_labels


def _adapt(domains, **options):
    from transferkit.workflows.adapt import adapt

    source, target, target_labels = domains
    defaults = dict(backbone=PixelBackbone(), target_labels=target_labels, epochs=4, progress=False, no_cache=True,
                    embedding="none", min_steps_per_epoch=25)
    return adapt(source, target, **{**defaults, **options})


@pytest.fixture(scope="module")
def helpful_run(domains):
    """One run of methods that should help on a translated domain, with target labels for scoring only."""
    return _adapt(domains, method="auto", candidates=["dan", "mcc", "probe-mcc", "source-probe", "coral-features", "subspace"],
                  tradeoffs={"dan": [1.0], "mcc": [1.0]})


def _accuracy(result, name):
    return next(r["target_accuracy"] for r in result.report["candidates"] if r["name"] == name)


# --- adaptation measurably helps ----------------------------------------------------------------------------------

def test_adaptation_beats_source_only_on_a_translated_domain(helpful_run):
    source_only = _accuracy(helpful_run, "source-only")
    assert source_only < 0.86  # the shift really hurts (source validation accuracy is about 0.96)
    assert _accuracy(helpful_run, "mcc@1") > source_only + 0.02
    assert _accuracy(helpful_run, "dan@1") >= source_only
    for name in ("coral-features", "subspace"):
        assert _accuracy(helpful_run, name) > source_only + 0.1, name
    labels = helpful_run.report["target_labels"]
    assert labels["chosen_accuracy"] > source_only + 0.1
    assert labels["improvement_over_source_only"] == pytest.approx(labels["chosen_accuracy"] - source_only, abs=1e-3)


def test_the_plain_probe_is_the_feature_path_reference_that_alignment_beats(helpful_run):
    report = helpful_run.report
    rows = {r["name"]: r for r in report["candidates"]}
    # no alignment: the probe reads the backbone features as they are, so its gap is the gap before
    assert rows["source-probe"]["proxy_a_distance"] == pytest.approx(report["domain_gap"]["before"], abs=1e-3)
    probe = rows["source-probe"]["target_accuracy"]
    assert probe < 0.86  # the shift hurts the plain probe too
    for name in ("coral-features", "subspace"):
        assert rows[name]["target_accuracy"] > probe + 0.1, name
    labels = report["target_labels"]
    assert labels["source_probe_accuracy"] == probe
    assert labels["improvement_over_source_probe"] == pytest.approx(labels["chosen_accuracy"] - probe, abs=1e-3)
    assert f"(source-probe {probe:.4f})" in helpful_run.summary()


def test_probe_mcc_trains_the_source_probe_head_and_stays_a_linear_model(helpful_run):
    from transferkit.models.heads.linear import LinearHead

    rows = {r["name"]: r for r in helpful_run.report["candidates"]}
    row = rows["probe-mcc@1"]
    assert row["started_from"] == "source-probe" and row["warm_start"] is True
    candidate = next(c for c in helpful_run.candidates if c.name == "probe-mcc@1")
    probe = next(c for c in helpful_run.candidates if c.name == "source-probe")
    assert isinstance(candidate.head, LinearHead)
    moved = (candidate.head.linear.weight - probe.head.linear.weight).abs().max().item()
    assert moved > 1e-4  # trained, from the probe's weights (the probe's own head is left as it was)
    assert row["target_accuracy"] > rows["source-probe"]["target_accuracy"]


def test_probe_mcc_refuses_a_trained_backbone_before_any_work(domains):
    with pytest.raises(ConfigError, match="probe-mcc.*train_backbone"):
        _adapt(domains, method="probe-mcc", train_backbone=True)


def test_the_label_free_choice_and_its_distance_from_the_best_in_hindsight(helpful_run):
    report = helpful_run.report
    rows = {r["name"]: r for r in report["candidates"]}
    chosen = report["chosen"]["name"]
    assert report["validator"] == "im"  # the default
    assert chosen == max(rows, key=lambda n: rows[n]["scores"]["im"])  # the validator decided
    labels = report["target_labels"]
    best = max(rows, key=lambda n: rows[n]["target_accuracy"])
    assert labels["best"] == best
    assert labels["gap_to_best"] == pytest.approx(rows[best]["target_accuracy"] - rows[chosen]["target_accuracy"],
                                                  abs=1e-3)
    assert labels["gap_to_best"] >= 0
    assert set(labels["choice_by_validator"]) == {"dev", "snd", "im", "im-cal", "entropy", "ensv"}
    assert labels["transductive"] is True
    assert helpful_run.target_accuracy == labels["chosen_accuracy"]


def test_another_validator_chooses_the_checkpoints_and_the_candidate(domains):
    result = _adapt(domains, method="auto", candidates=["source-only", "mcc", "source-probe"],
                    tradeoffs={"mcc": [1.0]}, validator="im-cal", epochs=3)
    report = result.report
    rows = {r["name"]: r for r in report["candidates"]}
    assert report["validator"] == "im-cal"
    assert report["chosen"]["name"] == max(rows, key=lambda n: rows[n]["scores"]["im-cal"])
    for name in ("source-only", "mcc@1"):  # the kept checkpoint is the epoch with the best im-cal score
        history = dict(rows[name]["epoch_scores"])
        assert rows[name]["best_epoch"] == max(history, key=history.get)
        assert rows[name]["scores"]["im-cal"] == pytest.approx(max(history.values()), abs=1e-4)


def test_ensemble_validation_chooses_among_finished_candidates_with_checkpoints_by_im(domains):
    from transferkit.evaluation.validators import ensemble_agreement_scores

    result = _adapt(domains, method="auto", candidates=["source-only", "mcc", "entropy", "source-probe"],
                    tradeoffs={"mcc": [1.0], "entropy": [1.0]}, validator="ensv", epochs=3)
    report = result.report
    rows = {r["name"]: r for r in report["candidates"]}
    expected = ensemble_agreement_scores([c.target_proba for c in result.candidates])
    assert [c.scores["ensv"] for c in result.candidates] == pytest.approx(expected.tolist())
    assert report["chosen"]["name"] == max(rows, key=lambda n: rows[n]["scores"]["ensv"])
    assert report["target_labels"]["choice_by_validator"]["ensv"]["choice"] == report["chosen"]["name"]
    for name in ("source-only", "mcc@1"):  # no score for one model alone: im picks the checkpoints
        history = dict(rows[name]["epoch_scores"])
        assert rows[name]["best_epoch"] == max(history, key=history.get)
        assert rows[name]["scores"]["im"] == pytest.approx(max(history.values()), abs=1e-4)


def test_the_report_shows_the_class_mix_of_source_labels_and_target_predictions(helpful_run):
    report = helpful_run.report
    classes = report["classes"]
    source = report["source_class_fractions"]
    assert list(source) == classes and sum(source.values()) == pytest.approx(1.0, abs=1e-3)
    for row, candidate in zip(report["candidates"], helpful_run.candidates):
        predicted = np.bincount(candidate.target_proba.argmax(1), minlength=len(classes)) / len(candidate.target_proba)
        assert list(row["target_predicted_fractions"].values()) == pytest.approx(predicted.tolist(), abs=1e-4)


def test_alignment_lowers_the_proxy_a_distance(helpful_run):
    report = helpful_run.report
    rows = {r["name"]: r for r in report["candidates"]}
    assert report["domain_gap"]["before"] > 1.0
    assert rows["coral-features"]["proxy_a_distance"] < report["domain_gap"]["before"] - 0.5
    assert rows["subspace"]["proxy_a_distance"] < report["domain_gap"]["before"] - 0.5


def test_every_trained_method_runs_on_the_engine_and_reports(domains):
    methods = ["coral", "dann", "cdan", "entropy", "self-train", "iw"]
    result = _adapt(domains, method="auto", candidates=methods, epochs=2, min_steps_per_epoch=10,
                    tradeoffs={"coral": [1.0], "dann": [1.0], "cdan": [1.0], "entropy": [0.1], "self-train": [1.0]},
                    weighting="selection")
    rows = {r["name"]: r for r in result.report["candidates"]}
    assert set(rows) == {"source-only", "coral@1", "dann@1", "cdan@1", "entropy@0.1", "self-train@1", "iw"}
    for row in rows.values():
        assert all(math.isfinite(v) for v in row["scores"].values())
        assert row["epochs_run"] == 2 and row["best_epoch"] in (0, 1)
        assert len(row["epoch_scores"]) == 2
        assert 0.0 <= row["target_accuracy"] <= 1.0
    assert rows["iw"]["weighting"] == "selection"
    assert rows["iw"]["effective_sample_size"] == pytest.approx(0.5 * result.report["n_source_train"], abs=1.0)


def test_one_method_with_a_fixed_tradeoff_and_fine_tuning_the_backbone(domains):
    backbone = PixelBackbone()
    before = backbone.scale.detach().clone()
    result = _adapt(domains, method="dann", tradeoff=0.5, train_backbone=True, epochs=2, min_steps_per_epoch=10,
                    lr=1e-2, backbone=backbone)
    assert [r["name"] for r in result.report["candidates"]] == ["source-only", "dann@0.5"]
    assert result.chosen.name == "dann@0.5"  # the pool is the method asked for; source-only is the reference
    assert torch.equal(backbone.scale, before)  # the caller's backbone is left alone
    assert not torch.equal(result.model.backbone.scale, before)  # the adapted copy was trained
    assert result.model.strategy == "adapt:dann"


def test_warm_start_continues_from_the_source_only_model(domains):
    result = _adapt(domains, method="mcc", tradeoff=1.0, epochs=3, adapt_epochs=1, warm_start=True,
                    min_steps_per_epoch=10)
    rows = {r["name"]: r for r in result.report["candidates"]}
    assert rows["source-only"]["epochs_run"] == 3 and rows["mcc@1"]["epochs_run"] == 1
    assert rows["mcc@1"]["warm_start"] is True and rows["source-only"]["warm_start"] is False


def test_without_target_labels_nothing_reads_them_and_the_summary_says_so(domains):
    source, target, _ = domains
    result = _adapt((source, target, None), method="subspace", epochs=1, min_steps_per_epoch=5)
    assert "target_labels" not in result.report and result.target_accuracy is None
    assert all("target_accuracy" not in r for r in result.report["candidates"])
    assert result.chosen.name == "subspace" and "target-acc" not in result.summary()
    assert result.model.strategy == "adapt:subspace" and type(result.model.head).__name__ == "LinearHead"


# --- validators ---------------------------------------------------------------------------------------------------

def test_entropy_and_information_maximisation_known_values():
    c = 4
    uniform = ValidationData(np.full((8, c), 1 / c))
    onehot = ValidationData(np.eye(c)[np.arange(8) % c])
    collapsed = ValidationData(np.eye(c)[np.zeros(8, int)])
    assert entropy_score(uniform) == pytest.approx(-math.log(c))
    assert entropy_score(onehot) == pytest.approx(0.0, abs=1e-9)
    assert information_maximization_score(uniform) == pytest.approx(0.0, abs=1e-9)
    assert information_maximization_score(onehot) == pytest.approx(math.log(c))
    # confident but collapsed onto one class: entropy calls it perfect, information maximisation does not
    assert entropy_score(collapsed) == pytest.approx(0.0, abs=1e-9)
    assert information_maximization_score(collapsed) == pytest.approx(0.0, abs=1e-9)


def test_information_maximisation_measures_balance_against_a_known_class_mix():
    prior = np.array([0.75, 0.25])
    in_the_mix = np.eye(2)[np.array([0, 0, 0, 1] * 4)]  # confident, three to one
    even = np.eye(2)[np.arange(16) % 2]  # confident, half and half
    entropy_of_prior = -(prior * np.log(prior)).sum()
    # a uniform prior is the plain score; the known mix moves the best marginal from even to three to one
    for proba in (in_the_mix, even):
        assert information_maximization_score(ValidationData(proba, target_prior=np.full(2, 0.5))) == \
            pytest.approx(information_maximization_score(ValidationData(proba)))
    assert information_maximization_score(ValidationData(even)) > information_maximization_score(
        ValidationData(in_the_mix))
    assert information_maximization_score(ValidationData(in_the_mix, target_prior=prior)) == \
        pytest.approx(entropy_of_prior)
    kl_even = (0.5 * np.log(0.5 / prior)).sum()
    assert information_maximization_score(ValidationData(even, target_prior=prior)) == \
        pytest.approx(entropy_of_prior - kl_even)


def test_ensemble_agreement_scores_each_candidate_against_the_pooled_prediction():
    from transferkit.evaluation.validators import ensemble_agreement_scores

    truth = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    good = np.eye(2)[truth] * 0.8 + 0.1
    one_wrong = good.copy()
    one_wrong[0] = [0.3, 0.7]
    collapsed = np.tile([0.05, 0.95], (8, 1))  # confident, one class: im-like scores like it, the ensemble does not
    scores = ensemble_agreement_scores([good, one_wrong, collapsed])
    # the ensemble's argmax: class 1 wherever the collapsed model tips the average (rows 0), else the truth
    pooled = np.mean([good, one_wrong, collapsed], axis=0).argmax(1)
    assert pooled.tolist() == [1, 1, 0, 1, 0, 1, 0, 1]
    assert scores.tolist() == pytest.approx([7 / 8, 1.0, 5 / 8])
    with pytest.raises(ConfigError, match="scores a candidate against the others"):
        validate("ensv", ValidationData(good))


def test_calibrated_im_does_not_reward_a_sharper_copy_of_the_same_model():
    from transferkit.evaluation.calibration import softmax

    rng = np.random.default_rng(0)
    val_logits, target_logits = rng.normal(0, 2, (400, 3)), rng.normal(0, 2, (300, 3)) + [0.5, 0, 0]
    labels = np.array([rng.choice(3, p=p) for p in softmax(val_logits)])  # calibrated at T = 1 by construction

    def candidate(sharpness):
        return ValidationData(softmax(sharpness * target_logits), softmax(sharpness * val_logits), labels)

    plain, sharp = candidate(1.0), candidate(3.0)
    # the same predictions, three times as confident: im prefers the sharper copy, im-cal scores both alike
    assert information_maximization_score(sharp) > information_maximization_score(plain) + 0.2
    assert calibrated_im_score(sharp) == pytest.approx(calibrated_im_score(plain), abs=0.01)
    # and near the im of the calibrated model itself
    assert calibrated_im_score(plain) == pytest.approx(information_maximization_score(plain), abs=0.05)
    with pytest.raises(ConfigError, match="im-cal validator"):
        validate("im-cal", ValidationData(plain.target_proba))


def test_snd_prefers_dense_clusters_to_scattered_predictions():
    rng = np.random.default_rng(0)
    clustered = np.eye(3)[np.arange(60) % 3] * 0.9 + 0.1 / 3
    scattered = rng.dirichlet(np.ones(3), size=60)
    # three tight clusters of 20: each row spreads its neighbourhood evenly over its 19 cluster mates
    assert snd_score(ValidationData(clustered)) == pytest.approx(math.log(19), abs=1e-3)
    assert snd_score(ValidationData(clustered)) > snd_score(ValidationData(scattered)) + 0.05
    # the value does not depend on the order of the rows
    order = rng.permutation(60)
    assert snd_score(ValidationData(clustered[order])) == pytest.approx(snd_score(ValidationData(clustered)))


def test_dev_control_variate():
    rng = np.random.default_rng(0)
    losses = rng.uniform(0.1, 2.0, 200)
    assert dev_risk(losses, np.ones(200)) == pytest.approx(losses.mean())  # equal weights: the plain mean
    weights = rng.uniform(0.2, 3.0, 200)
    # a constant loss l is recovered exactly whatever the weights: L = l w, eta = -l
    assert dev_risk(np.full(200, 0.7), weights) == pytest.approx(0.7)
    weighted = weights * losses
    eta = -np.cov(weighted, weights)[0, 1] / weights.var(ddof=1)
    assert dev_risk(losses, weights) == pytest.approx(weighted.mean() + eta * weights.mean() - eta)


def test_dev_score_is_minus_the_weighted_cross_entropy_risk_and_needs_its_inputs():
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    data = ValidationData(proba, proba, np.array([0, 1, 1]), np.ones(3))
    assert validate("dev", data) == pytest.approx(-np.mean(-np.log([0.9, 0.8, 0.4])))
    with pytest.raises(ConfigError, match="dev validator"):
        validate("dev", ValidationData(proba))
    with pytest.raises(ConfigError, match="unknown validator"):
        validate("accuracy", data)


# --- instance weights, alignment, diagnostics --------------------------------------------------------------------

def _gaussians(seed=0, shift=2.0):
    rng = np.random.default_rng(seed)
    source = rng.normal(0, 1, (300, 3))
    target = rng.normal(0, 1, (300, 3)) + np.array([shift, 0, 0])
    return source, target


def test_density_ratio_weights_follow_the_true_ratio():
    from transferkit.strategies.adaptation.instance_weights import density_ratio_weights

    source, target = _gaussians(shift=1.0)
    weights = density_ratio_weights(source, target, flatten=1.0)
    assert weights.mean() == pytest.approx(1.0)
    true_log_ratio = source[:, 0] * 1.0 - 0.5  # log N(x; 1, 1) - log N(x; 0, 1)
    assert np.corrcoef(np.log(weights), true_log_ratio)[0, 1] > 0.9
    flat = density_ratio_weights(source, target, flatten=0.5)
    assert flat.std() < weights.std()  # flattening lowers the spread


def test_kernel_mean_matching_moves_the_weighted_source_mean_towards_the_target():
    from transferkit.strategies.adaptation.instance_weights import kernel_mean_matching

    source, target = _gaussians(shift=1.0)
    weights = kernel_mean_matching(source, target)
    assert weights.min() >= 0 and weights.mean() == pytest.approx(1.0)
    weighted_mean = (weights[:, None] * source).sum(0) / weights.sum()
    assert abs(weighted_mean[0] - target[:, 0].mean()) < 0.5 * abs(source[:, 0].mean() - target[:, 0].mean())


def test_source_selection_keeps_the_examples_closest_to_the_target():
    from transferkit.strategies.adaptation.instance_weights import source_selection

    source, target = _gaussians(shift=2.0)
    weights = source_selection(source, target, fraction=0.25)
    kept = weights > 0
    assert kept.sum() == 75
    assert source[kept, 0].mean() > source[~kept, 0].mean() + 1.0
    with pytest.raises(ConfigError, match="fraction"):
        source_selection(source, target, fraction=0.0)


def test_weighted_linear_probe_ignores_examples_of_weight_zero():
    from transferkit.estimators.linear_probe import LinearProbe

    rng = np.random.default_rng(0)
    X = rng.normal(0, 1, (120, 4))
    y = (X[:, 0] > 0).astype(int)
    noise = np.r_[np.zeros(80), np.ones(40)].astype(bool)
    y_noisy = np.where(noise, 1 - y, y)
    weights = (~noise).astype(float)
    weighted = LinearProbe(C=1.0).fit(X, y_noisy, sample_weight=weights)
    subset = LinearProbe(C=1.0).fit(X[~noise], y_noisy[~noise])
    assert np.allclose(weighted.predict_proba(X), subset.predict_proba(X), atol=0.05)
    with pytest.raises(ConfigError, match="sample_weight"):
        LinearProbe().fit(X, y, sample_weight=-np.ones(120))


def test_coral_recolouring_matches_the_target_covariance():
    from transferkit.estimators.feature_alignment import CoralRecoloring

    rng = np.random.default_rng(0)
    source = rng.normal(0, 1, (500, 4)) @ np.diag([1.0, 0.5, 2.0, 1.0])
    target = rng.normal(0, 1, (500, 4)) @ np.array([[2, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0.5, 0], [0, 0, 0, 3.0]]) + 5
    aligned = CoralRecoloring(regularization=1e-6).fit(source, target).transform(source)
    assert np.allclose(np.cov(aligned, rowvar=False), np.cov(target, rowvar=False), atol=0.05)
    assert np.allclose(aligned.mean(0), target.mean(0), atol=1e-3)


def test_subspace_alignment_head_reads_raw_target_features_exactly():
    from transferkit.estimators.feature_alignment import SubspaceAlignment
    from transferkit.estimators.linear_probe import LinearProbe

    rng = np.random.default_rng(0)
    source, target = rng.normal(0, 1, (200, 6)), rng.normal(1, 2, (150, 6))
    y = (source[:, 0] + source[:, 1] > 0).astype(int)
    aligner = SubspaceAlignment(n_components=3).fit(source, target)
    probe = LinearProbe(C=1.0).fit(aligner.transform(source), y)
    head = aligner.head_from_probe(probe.to_head())
    with torch.no_grad():
        proba = torch.softmax(head(torch.as_tensor(target, dtype=torch.float32)), dim=1).numpy()
    assert np.allclose(proba, probe.predict_proba(aligner.transform_target(target)), atol=1e-4)


def test_proxy_a_distance_and_embedding_plot(tmp_path):
    from transferkit.evaluation.domain_gap import plot_domain_embedding, proxy_a_distance

    same_a, same_b = _gaussians(shift=0.0)
    assert proxy_a_distance(same_a, same_b) < 0.3
    shifted_a, shifted_b = _gaussians(shift=4.0)
    assert proxy_a_distance(shifted_a, shifted_b) > 1.7
    path = plot_domain_embedding([("before", shifted_a, shifted_b), ("after", same_a, same_b)], tmp_path / "e.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ConfigError, match="pca"):
        plot_domain_embedding([("x", same_a, same_b)], tmp_path / "f.png", method="umap")


# --- the plan on the engine ---------------------------------------------------------------------------------------

def test_plan_terms_schedules_and_paired_batches():
    from transferkit.models.heads.bottleneck import BottleneckHead
    from transferkit.strategies.adaptation.plan import (
        AdaptationNetwork,
        AdaptationPlan,
        PairedCollate,
        PairedExamples,
        identity,
        stack_rows,
    )

    data = PairedExamples(np.zeros((5, 3)), np.arange(5) % 2, np.ones((8, 3)), identity, seed=0, min_length=10)
    assert len(data) == 10
    inputs, labels = PairedCollate(stack_rows)([data[i] for i in range(4)])
    assert inputs["source"].shape == (4, 3) and inputs["target"].shape == (4, 3) and labels.tolist() == [0, 1, 0, 1]
    assert torch.all(inputs["target"] == 1) and torch.all(inputs["weight"] == 1)

    torch.manual_seed(0)
    for method, key in [("dann", "dann"), ("self-train", "self_train"), ("mcc", "mcc"), ("source-only", None)]:
        plan = AdaptationPlan(method, 0.5, backbone_trainable=False)
        network = AdaptationNetwork(BottleneckHead(3, 2, hidden=8), None, plan.auxiliary_modules(8, 2))
        plan.set_progress(0.5)
        terms = plan.loss_terms(network, {"source": torch.randn(6, 3), "target": torch.randn(6, 3)},
                                torch.tensor([0, 1] * 3))
        assert set(terms) == ({"cross_entropy", key} if key else {"cross_entropy"})
        assert all(torch.isfinite(v) for v in terms.values())
    plan = AdaptationPlan("dann", 1.0, backbone_trainable=False)
    plan.set_progress(0.0)
    assert plan._coefficient == 0.0
    plan.set_progress(1.0)
    assert plan._coefficient > 0.99
    self_train = AdaptationPlan("self-train", 1.0, backbone_trainable=False, threshold_start=0.9, threshold_end=0.7)
    self_train.set_progress(0.5)
    assert self_train.threshold() == pytest.approx(0.8)
    with pytest.raises(ConfigError, match="unknown adaptation method"):
        AdaptationPlan("mixup", 1.0, backbone_trainable=False)


def test_adversarial_losses_tell_shifted_domains_apart_but_not_equal_ones():
    """The adversarial counterpart of 'a discrepancy is near zero for one distribution and large when shifted':
    a discriminator trained briefly is at chance on new samples of equal domains and tells shifted ones apart."""
    from transferkit.losses import create_loss
    from transferkit.strategies.adaptation.plan import discriminator

    def sample(name, shift, seed):
        gen = torch.Generator().manual_seed(seed)
        source, target = torch.randn(256, 4, generator=gen), torch.randn(256, 4, generator=gen) + shift
        logits = (torch.randn(256, 3, generator=gen), torch.randn(256, 3, generator=gen))
        return (source, target) if name == "dann" else (source, target, *logits)

    def trained_accuracy(name, shift):
        torch.manual_seed(0)
        if name == "dann":
            loss = create_loss("dann", discriminator=discriminator(4, 32))
        else:
            loss = create_loss("cdan", discriminator=discriminator(12, 32), feature_dim=4, num_classes=3)
        optimizer = torch.optim.Adam(loss.parameters(), lr=1e-2)
        train = sample(name, shift, 1)
        for _ in range(100):
            optimizer.zero_grad()
            loss(*train).backward()
            optimizer.step()
        loss.eval()
        return loss.discriminator_accuracy(*sample(name, shift, 2))

    for name in ("dann", "cdan"):
        assert abs(trained_accuracy(name, 0.0) - 0.5) < 0.2, name
        assert trained_accuracy(name, 3.0) > 0.95, name


def test_domain_adversarial_gradient_is_exactly_the_negated_plain_gradient():
    from transferkit.losses import create_loss
    from transferkit.losses._domain import domain_bce
    from transferkit.strategies.adaptation.plan import discriminator

    torch.manual_seed(0)
    loss = create_loss("dann", discriminator=discriminator(4, 16), coefficient=1.0).eval()
    source = torch.randn(6, 4, requires_grad=True)
    target = torch.randn(5, 4, requires_grad=True)
    loss(source, target).backward()
    reversed_grads = source.grad.clone(), target.grad.clone()
    source.grad, target.grad = None, None
    domain_bce(loss.discriminator(torch.cat([source, target]))[:, 0], 6).backward()
    assert torch.equal(reversed_grads[0], -source.grad)
    assert torch.equal(reversed_grads[1], -target.grad)


# --- saving, loading, predicting ----------------------------------------------------------------------------------

def test_adapted_model_saves_loads_and_predicts(tmp_path, tiny_text_model):
    import transferkit
    from transferkit.models.artifacts import load_model
    from conftest import TEXTS

    source_texts = [t for texts in TEXTS.values() for t in texts]
    source_labels = [label for label, texts in TEXTS.items() for _ in texts]
    target_texts = [t.upper() + "!" for t in source_texts]
    result = transferkit.adapt(from_arrays(source_texts, source_labels, origin="reviews"),
                               from_arrays(target_texts, origin="shouting"), backbone=str(tiny_text_model),
                               method="mcc", tradeoff=1.0, epochs=1, min_steps_per_epoch=2, batch_size=8,
                               output=str(tmp_path / "model"), progress=False, target_labels=source_labels)
    folder = result.output
    assert (folder / "adaptation.json").is_file() and (folder / "embedding.png").is_file()
    report = json.loads((folder / "adaptation.json").read_text())
    assert report["embedding_plot"] == "embedding.png" and report["chosen"]["name"] == "mcc@1"
    assert "source_fingerprint" in (folder / "run_config.yaml").read_text()
    loaded = load_model(folder)
    assert type(loaded.head).__name__ == "BottleneckHead"
    target = from_arrays(target_texts, origin="shouting")
    assert np.allclose(loaded.predict_proba(target, progress=False),
                       result.model.predict_proba(target, progress=False), atol=1e-5)
    predictions = transferkit.predict(folder, target_texts[:3], progress=False)
    assert {p["label"] for p in predictions} <= {"negative", "positive"}


def test_fine_tuned_text_backbone_is_saved_with_its_weights(tmp_path, tiny_text_model):
    import transferkit
    from transferkit.models.artifacts import load_model
    from conftest import TEXTS

    texts = [t for group in TEXTS.values() for t in group]
    labels = [label for label, group in TEXTS.items() for _ in group]
    target = from_arrays([f"{t}, said nobody" for t in texts], origin="target")
    result = transferkit.adapt(from_arrays(texts, labels, origin="reviews"), target, backbone=str(tiny_text_model),
                               method="dann", tradeoff=1.0, train_backbone=True, epochs=1, min_steps_per_epoch=2,
                               batch_size=8, output=str(tmp_path / "model"), embedding="none", progress=False)
    config = json.loads((result.output / "config.json").read_text())
    assert config["backbone"]["weights_included"] is True
    loaded = load_model(result.output)
    assert np.allclose(loaded.predict_proba(target, progress=False), result.model.predict_proba(target, progress=False),
                       atol=1e-5)


@pytest.fixture(scope="module")
def label_shifted(domains):
    """A target of the source's distribution within each class, but with four in five examples of class 1 (the
    source is half and half): a shift of the class mix alone, the case Bayes' rule corrects exactly."""
    source, _, _ = domains
    images, labels = shifted_domain(600, seed=3)
    ones = [i for i, v in enumerate(labels) if v == "1"][:240]
    zeros = [i for i, v in enumerate(labels) if v == "0"][:60]
    keep = sorted(ones + zeros)
    return source, from_arrays(images[keep], origin="target"), [labels[i] for i in keep]


def test_a_known_target_class_mix_moves_every_candidate_and_the_saved_model(label_shifted):
    source, target, target_labels = label_shifted
    options = dict(method="auto", candidates=["source-probe", "mcc"], tradeoffs={"mcc": [1.0]}, epochs=2)
    plain = _adapt(label_shifted, **options)
    mixed = _adapt(label_shifted, target_prior={"0": 0.2, "1": 0.8}, **options)
    assert mixed.report["target_prior"] == {"0": 0.2, "1": 0.8}
    source_mix = np.array(list(mixed.report["source_class_fractions"].values()))
    probe_plain, probe_mixed = (next(c for c in r.candidates if c.name == "source-probe") for r in (plain, mixed))
    # Bayes' rule for a change of class priors, exactly: p(y | x) * pi_target(y) / pi_source(y), renormalised
    moved = probe_plain.target_proba * (np.array([0.2, 0.8]) / source_mix)
    assert probe_mixed.target_proba == pytest.approx(moved / moved.sum(1, keepdims=True), abs=1e-4)
    # on a target that really has that mix, the moved predictions are closer to it and fit its labels better
    share = [c.target_proba.argmax(1).mean() for c in (probe_plain, probe_mixed)]
    assert abs(share[1] - 0.8) < abs(share[0] - 0.8)
    y = np.array([int(v) for v in target_labels])
    log_loss = [-np.log(c.target_proba[np.arange(len(y)), y]).mean() for c in (probe_plain, probe_mixed)]
    assert log_loss[1] < log_loss[0] - 0.01
    # the shift is in the model that adapt returns (and saves): it predicts what the validator scored
    for result in (mixed, _adapt(label_shifted, target_prior={"0": 0.2, "1": 0.8}, method="mcc", tradeoff=1.0,
                                 epochs=2)):
        assert result.model.predict_proba(target, progress=False) == pytest.approx(result.chosen.target_proba,
                                                                                   abs=1e-4)


# --- bad input ----------------------------------------------------------------------------------------------------

def test_bad_input_fails_before_any_work(domains, tmp_path, text_csv):
    from transferkit.workflows.adapt import adapt

    source, target, _ = domains
    with pytest.raises(ConfigError, match="method"):
        adapt(source, target, backbone=PixelBackbone(), method="magic")
    with pytest.raises(ConfigError, match="candidates"):
        adapt(source, target, backbone=PixelBackbone(), candidates=["dann", "magic"])
    with pytest.raises(ConfigError, match="tradeoffs"):
        adapt(source, target, backbone=PixelBackbone(), tradeoffs={"subspace": [1.0]})
    with pytest.raises(DataError, match="one modality"):
        adapt(source, from_arrays(["a text", "another"], origin="texts"), backbone=PixelBackbone())
    with pytest.raises(DataError, match="target-labels 'sentiment'"):
        adapt(text_csv, text_csv, target_labels="sentiment", backbone=PixelBackbone())
    with pytest.raises(DataError, match="2 labels for 300"):
        adapt(source, target, target_labels=["0", "1"], backbone=PixelBackbone())
    with pytest.raises(ConfigError, match="takes image input"):
        adapt(from_arrays(["good", "great", "bad", "awful"], ["p", "p", "n", "n"]), from_arrays(["fine"]),
              backbone=PixelBackbone())
    with pytest.raises(ConfigError, match="--source"):
        adapt(None, target)
    with pytest.raises(ConfigError, match="device"):
        adapt(source, target, backbone=PixelBackbone(), device="tpu")
    with pytest.raises(ConfigError, match=r"target_prior: give a fraction for every class .*missing \['1'\]"):
        adapt(source, target, backbone=PixelBackbone(), target_prior={"0": 0.5, "2": 0.5})
    with pytest.raises(ConfigError, match="strictly between 0 and 1"):
        adapt(source, target, backbone=PixelBackbone(), target_prior={"0": 0.0, "1": 1.0})
