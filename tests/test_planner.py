"""fit --strategy auto: the planner's choice follows the data size as its rules say, fits the budget, and is
explained in the run config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import transferkit as tk
from synthetic_texts import synthetic_dataset, write_synthetic_csv
from test_cli import run
from transferkit.backbones import create_backbone
from transferkit.config import make_config
from transferkit.errors import ConfigError
from transferkit.strategies import planner
from transferkit.strategies.budget import parse_duration


@pytest.fixture(scope="module")
def backbone(tiny_text_model: Path):
    return create_backbone(str(tiny_text_model))


def plan(backbone, per_class: int, epochs: int = 10, **kwargs):
    config = make_config(batch_size=16, progress=False, device="cpu", no_cache=True, epochs=epochs)
    return planner.plan_strategy(synthetic_dataset(per_class), config, backbone, **kwargs)


def test_choice_follows_the_number_of_labels_per_class(backbone) -> None:
    few = plan(backbone, 5, epochs=1, budget_s=3600)  # few labels per class: the candidates are measured on folds
    assert few.strategy in ("linear-probe", "contrastive")
    assert "5 labelled examples per class" in few.explanation and "stratified folds" in few.explanation
    assert {c["name"] for c in few.facts["measured"]["candidates"]} == {"linear-probe", "contrastive"}

    medium = plan(backbone, 40, budget_s=3600)
    assert medium.strategy == "lp-ft" and medium.epochs == 10 and "the probe is kept" in medium.explanation
    assert medium.facts["step_seconds"] > 0 and set(medium.estimates_s) == {"linear-probe", "finetune", "lp-ft", "lora"}
    assert medium.facts["measured_on"] == medium.facts["n_train"]  # below PLANNER_SHOTS per class: all of it

    # large data: the planner measures on a sample of PLANNER_SHOTS per class and scales the probe's cost up
    large = plan(backbone, planner.LARGE_DATA_MIN, budget_s=3600)
    assert large.strategy == "finetune" and large.facts["per_class_median"] == planner.LARGE_DATA_MIN
    assert f"{planner.LARGE_DATA_MIN} or more labels" in large.explanation
    assert large.facts["measured_on"] == large.facts["n_classes"] * planner.PLANNER_SHOTS < large.facts["n_train"]
    assert large.training_time_limit_s <= 3600
    # the same data with a large backbone: low-rank adapters
    lora = plan(backbone, planner.LARGE_DATA_MIN, lora_min_parameters=1000)
    assert lora.strategy == "lora" and f"{planner.LARGE_DATA_MIN} or more labels" in lora.explanation


def test_a_backbone_without_pretrained_weights_is_fine_tuned(tiny_text_model: Path) -> None:
    random_backbone = create_backbone(f"random:{tiny_text_model}")
    chosen = plan(random_backbone, 40, budget_s=3600)
    assert chosen.strategy == "finetune" and "no pretrained weights" in chosen.explanation


def test_budget_too_small_falls_back_to_the_probe(backbone) -> None:
    tight = plan(backbone, planner.LARGE_DATA_MIN, budget_s=0.01)
    assert tight.strategy == "linear-probe" and "budget" in tight.explanation and tight.epochs is None
    # a budget of a few epochs reduces the epochs rather than the strategy
    roomy = plan(backbone, planner.LARGE_DATA_MIN, budget_s=3600)
    per_epoch = roomy.facts["epoch_seconds_estimate"]
    some = plan(backbone, planner.LARGE_DATA_MIN, budget_s=roomy.planning_s + 3.5 * per_epoch + 1)
    if some.strategy != "linear-probe":  # the estimate can vary from run to run on a loaded machine
        assert planner.MIN_EPOCHS <= some.epochs <= 10
        assert some.training_time_limit_s <= some.budget_s


def test_too_few_updates_for_a_new_head_means_lp_ft(backbone) -> None:
    config = make_config(batch_size=64, progress=False, device="cpu", no_cache=True, epochs=2)
    short = planner.plan_strategy(synthetic_dataset(planner.LARGE_DATA_MIN), config, backbone,  # 2 epochs x 12 steps
                                  lora_min_parameters=1000)
    assert short.facts["steps_per_epoch"] * 2 < planner.MIN_TRAINING_STEPS
    assert short.strategy == "lp-ft" and "optimiser updates" in short.explanation and short.epochs == 2


def test_durations_parse() -> None:
    assert parse_duration("90") == 90 and parse_duration("90s") == 90 and parse_duration("20m") == 1200
    assert parse_duration("1.5h") == 5400 and parse_duration(30) == 30
    with pytest.raises(ConfigError, match="budget"):
        parse_duration("soon")
    assert make_config(strategy="auto", budget="2m").budget == 120


def test_fit_auto_saves_the_plan_and_budget_needs_auto(tiny_text_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    result = tk.fit(synthetic_dataset(6), backbone=str(tiny_text_model), strategy="auto", budget=600, epochs=1,
                    output=str(out), progress=False, device="cpu", report=False, tracking_uri="off",
                    work_dir=str(tmp_path / "work"))
    chosen = result.config["strategy"]  # few labels per class: measured on folds (the probe, or contrastive)
    assert chosen in ("linear-probe", "contrastive") and result.config["strategy_requested"] == "auto"
    assert f"auto: Strategy {chosen}" in result.summary()
    saved = yaml.safe_load((out / "run_config.yaml").read_text())
    assert saved["plan"]["explanation"].startswith(f"Strategy {chosen}") and saved["budget"] == 600
    with pytest.raises(ConfigError, match="budget"):
        tk.fit(synthetic_dataset(6), backbone=str(tiny_text_model), strategy="finetune", budget=60)


def test_fit_auto_command_trains_within_the_budget(tiny_text_model: Path, tmp_path: Path) -> None:
    csv = write_synthetic_csv(tmp_path / "texts.csv", per_class=30)
    out = tmp_path / "model"
    proc = run("fit", str(csv), "--backbone", str(tiny_text_model), "--strategy", "auto", "--budget", "5m",
               "--epochs", "4", "--batch-size", "4", "--baselines", "raw", "--tracking-uri", "off", "--device", "cpu", "--no-report",
               "--work-dir", str(tmp_path / "work"), "--output", str(out), "-q")
    assert "auto: Strategy " in proc.stdout
    saved = yaml.safe_load((out / "run_config.yaml").read_text())
    assert saved["strategy"] in ("lp-ft", "finetune") and saved["plan"]["training_time_limit_s"] <= 300
    assert saved["training"]["training"]["epochs_run"] <= 4
