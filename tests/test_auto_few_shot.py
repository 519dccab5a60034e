"""fit --strategy auto on few labels per class: the candidates measured on folds of the training data, and a choice
that never measured worse than the probe."""

from __future__ import annotations

from pathlib import Path

import yaml
from transferkit.strategies.selection_by_cv import LABEL_NAMES, PROBE, TRAINING_FOLDS, Candidate, choose


def test_auto_measures_the_probes_and_contrastive_on_folds_and_explains_the_choice(
        text_csv: Path, tiny_text_model: Path, tmp_path: Path) -> None:
    from transferkit.workflows.fit import fit

    out = tmp_path / "model"
    fit(str(text_csv), backbone=str(tiny_text_model), strategy="auto", epochs=1, batch_size=8, test_fraction=0.25,
        baselines=["raw"], work_dir=str(tmp_path / "work"), output=str(out), tracking_uri="off", device="cpu",
        report=False, progress=False)
    run_config = yaml.safe_load((out / "run_config.yaml").read_text())
    plan = run_config["plan"]
    measured = {c["name"]: c for c in plan["facts"]["measured"]["candidates"]}
    assert set(measured) == {PROBE, LABEL_NAMES, "contrastive"}
    assert len(measured[PROBE]["scores"]) == 2 * plan["facts"]["measured"]["folds"]  # two repeats
    assert len(measured["contrastive"]["scores"]) == TRAINING_FOLDS
    assert measured["contrastive"]["estimate_s"] > 0 and measured["contrastive"]["seconds"] > 0
    chosen = next(c for c in measured.values() if c["strategy"] == run_config["strategy"]
                  and c["options"] == plan["options"])
    best_probe = max(measured[PROBE]["mean"], measured[LABEL_NAMES]["mean"])
    if chosen["strategy"] == PROBE:
        assert chosen["mean"] == best_probe
    else:
        assert chosen["mean"] > chosen["probe_on_same_folds"]
    explanation = plan["explanation"]
    assert "stratified folds" in explanation and f"{measured[PROBE]['mean']:.3f}" in explanation
    assert "contrastive" in explanation and f"estimated {measured['contrastive']['estimate_s']:.0f} s" in explanation


def test_choice_never_takes_a_candidate_that_measured_worse_than_the_probe() -> None:
    probe = Candidate(PROBE, PROBE, {"label_prior": "off"}, [0.6, 0.7, 0.6, 0.7])
    names = Candidate(LABEL_NAMES, PROBE, {"label_prior": "on"}, [0.6, 0.7, 0.6, 0.7])  # a tie: the plain probe
    worse = Candidate("contrastive", "contrastive", scores=[0.64, 0.66], probe_on_same_folds=0.66)
    assert choose([probe, names, worse], 4)[0] is probe
    better = Candidate("finetune", "finetune", scores=[0.70, 0.72], probe_on_same_folds=0.66)
    best, reason = choose([probe, names, worse, better], 4)
    assert best is better and "finetune 0.710" in reason and "the probe 0.660 on the same folds" in reason
    stopped = Candidate("contrastive", "contrastive", scores=[0.9], probe_on_same_folds=0.6,
                        skipped="stopped after 1 fold(s), clearly behind the probe")
    assert choose([probe, stopped], 4)[0] is probe
    assert choose([Candidate(PROBE, PROBE, {}, [0.5, 0.6]), Candidate(LABEL_NAMES, PROBE, {}, [0.6, 0.7])],
                  2)[0].name == LABEL_NAMES


def test_timing_a_strategy_step_uses_its_trainable_layers_and_leaves_the_backbone_untouched(
        text_csv: Path, tiny_text_model: Path) -> None:
    import torch
    from transferkit.backbones import create_backbone
    from transferkit.data import load_data
    from transferkit.strategies.contrastive import ContrastiveTuning
    from transferkit.strategies.options import ContrastiveConfig
    from transferkit.strategies.planner import time_training_step

    backbone = create_backbone(str(tiny_text_model))
    before = {name: p.detach().clone() for name, p in backbone.named_parameters()}
    data = load_data(str(text_csv))
    strategy = ContrastiveTuning(ContrastiveConfig(top_layers=1))
    seconds = time_training_step(backbone, data, list(data.classes), 8, "cpu", strategy=strategy)
    assert seconds > 0
    assert all(p.requires_grad for p in backbone.parameters())  # the strategy froze layers of a copy only
    assert all(torch.equal(p, before[name]) for name, p in backbone.named_parameters())


def test_contrastive_trains_every_layer_group_by_default_and_its_head_learns_fast() -> None:
    from transferkit.strategies.contrastive import ContrastiveTuning

    assert ContrastiveTuning().config.top_layers == 0 and ContrastiveTuning.default_lr == 2e-5
    assert ContrastiveTuning().head_learning_rate(2e-5) == ContrastiveTuning.default_head_lr == 1e-2
    assert ContrastiveTuning(head_lr=0.5).head_learning_rate(2e-5) == 0.5


def test_timing_a_finetune_step_on_images_calls_the_model_as_the_engine_does(image_folder: Path) -> None:
    from conftest import TINY_IMAGE_BACKBONE
    from transferkit.backbones import create_backbone
    from transferkit.data import load_data
    from transferkit.strategies.finetune import FineTune
    from transferkit.strategies.planner import time_training_step

    backbone = create_backbone(TINY_IMAGE_BACKBONE)
    data = load_data(str(image_folder))
    assert time_training_step(backbone, data, list(data.classes), 4, "cpu", strategy=FineTune()) > 0
