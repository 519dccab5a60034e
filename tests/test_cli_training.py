"""`transferkit fit` with the training strategies, end to end in a real subprocess."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from test_cli import run


def test_fit_finetune_with_options_and_the_scratch_baseline(text_csv: Path, tiny_text_model: Path,
                                                             tmp_path: Path) -> None:
    out = tmp_path / "model"
    proc = run("fit", str(text_csv), "--backbone", str(tiny_text_model), "--strategy", "finetune", "--epochs", "2",
               "--batch-size", "4", "--freeze", "1", "--layer-lr-decay", "0.8", "--augment", "medium",
               "--baselines", "raw,scratch", "--tracking-uri", "off", "--work-dir", str(tmp_path / "work"),
               "--test-fraction", "0.25", "--device", "cpu", "--output", str(out))
    assert "(finetune)" in proc.stdout and "baseline: scratch" in proc.stdout and "baseline: raw" in proc.stdout
    assert proc.stdout.count("verdict:") == 2 and f"saved: {out}" in proc.stdout
    run_config = yaml.safe_load((out / "run_config.yaml").read_text())
    assert run_config["finetune"] == {"freeze": 1, "layer_lr_decay": 0.8, "unfreeze_every": 0, "bn_statistics": "auto",
                                     "keep_probe": True}
    assert run_config["augment"] == "medium" and run_config["training"]["augmentation"]["mask"] == 0.10
    metrics = json.loads((out / "metrics.json").read_text())
    assert {c["baseline"] for c in metrics["comparisons"]} == {"raw", "scratch"}
    assert len(metrics["training"]["history"]) >= 1
    assert (out / "training_log.csv").is_file()
    evaluation = json.loads(run("evaluate", str(out), str(text_csv), "--json", "-q").stdout)
    assert evaluation["n"] == 16


def test_yaml_config_with_a_nested_strategy_section_and_flag_override(text_csv: Path, tiny_text_model: Path,
                                                                      tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    out = tmp_path / "m"
    config.write_text(f"data: {text_csv}\nbackbone: '{tiny_text_model}'\nstrategy: lora\nepochs: 1\nbatch-size: 4\n"
                      f"lora:\n  rank: 2\n  alpha: 8\ntracking-uri: 'off'\nbaselines: [raw]\noutput: {out}\n"
                      "test-fraction: 0.25\ndevice: cpu\n")
    run("fit", "--config", str(config), "--lora-alpha", "4", "--work-dir", str(tmp_path / "work"), "-q")
    run_config = yaml.safe_load((out / "run_config.yaml").read_text())
    assert run_config["strategy"] == "lora" and run_config["lora"]["rank"] == 2 and run_config["lora"]["alpha"] == 4


def test_option_errors_are_reported_before_training(text_csv: Path, tiny_text_model: Path, tmp_path: Path) -> None:
    common = ["fit", str(text_csv), "--backbone", str(tiny_text_model), "--tracking-uri", "off", "--device", "cpu",
              "--work-dir", str(tmp_path / "work")]
    proc = run(*common, "--strategy", "finetune", "--freeze", "99", check=False)
    assert proc.returncode == 2 and "--freeze" in proc.stderr and "layer groups" in proc.stderr
    proc = run(*common, "--strategy", "finetune", "--resume", check=False)
    assert proc.returncode == 2 and "--resume: nothing to resume" in proc.stderr
    proc = run(*common, "--strategy", "lora", "--lora-rank", "0", check=False)
    assert proc.returncode == 2 and "lora.rank" in proc.stderr
    proc = run(*common, "--strategy", "finetune", "--mixup", "0.2", check=False)
    assert proc.returncode == 2 and "mixup" in proc.stderr
    assert not (tmp_path / "work" / "finetune" / "checkpoints").exists()
