"""tune: a study that is stopped or killed and restarted continues with the trials already done; pruning reports
through the engine; the best configuration runs with fit --config."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from synthetic_texts import synthetic_dataset, write_synthetic_csv
from test_cli import CLI, run
from transferkit.errors import ConfigError
from transferkit.tuning.search import default_space
from transferkit.workflows.tune import tune

optuna = pytest.importorskip("optuna")


def test_a_stopped_study_resumes_with_its_trials(tiny_text_model: Path, tmp_path: Path) -> None:
    data = synthetic_dataset(8)
    common = dict(backbone=str(tiny_text_model), device="cpu", progress=False, cache_dir=str(tmp_path / "cache"),
                  output=str(tmp_path / "tune"), study_name="probe")
    first = tune(data, n_trials=3, **common)
    assert first.n_complete == 3 and first.n_run_now == 3
    storage = f"sqlite:///{(tmp_path / 'tune' / 'study.db').resolve()}"
    assert first.storage == storage
    before = {t.number: (t.params, t.value) for t in optuna.load_study(study_name="probe", storage=storage).trials}
    second = tune(data, n_trials=5, **common)
    assert second.n_run_now == 2 and second.n_complete == 5  # only the missing trials ran
    trials = optuna.load_study(study_name="probe", storage=storage).trials
    assert {t.number: (t.params, t.value) for t in trials[:3]} == before
    third = tune(data, n_trials=5, **common)
    assert third.n_run_now == 0 and third.best_value == second.best_value
    assert all(1e-4 <= t.params["probe_c"] <= 1e2 for t in trials)
    best = yaml.safe_load((tmp_path / "tune" / "best_config.yaml").read_text())
    assert best["probe_c"] == pytest.approx(second.best_params["probe_c"])
    assert len(second.top) == 5 and all(Path(row["config"]).is_file() for row in second.top)
    page = (tmp_path / "tune" / "report.html").read_text(encoding="utf-8")
    assert "Hyper-parameter search" in page and "probe_c" in page


def test_training_trials_report_every_epoch_to_the_pruner(tiny_text_model: Path, tmp_path: Path) -> None:
    result = tune(synthetic_dataset(8), strategy="finetune", backbone=str(tiny_text_model), epochs=3, batch_size=8,
                  patience=0, augment="none", tracking_uri="off", device="cpu", progress=False, n_trials=2,
                  space={"lr": {"low": 1e-5, "high": 1e-2, "log": True}}, storage=f"sqlite:///{tmp_path / 's.db'}",
                  work_dir=str(tmp_path / "work"))
    study = optuna.load_study(study_name=result.study_name, storage=f"sqlite:///{tmp_path / 's.db'}")
    for trial in study.trials:
        assert trial.state == optuna.trial.TrialState.COMPLETE
        assert sorted(trial.intermediate_values) == [0, 1, 2]  # one report per epoch, from the engine's callback
        assert trial.value == pytest.approx(max(trial.intermediate_values.values()))
    assert study.trials[0].params["lr"] == pytest.approx(1e-4)  # the first trial of a new study runs the defaults


def test_an_lp_ft_trial_that_keeps_its_probe_is_scored_as_the_probe(tiny_text_model: Path, tmp_path: Path) -> None:
    # a learning rate that wrecks the weights: lp-ft returns its probe, and the trial's value is the probe's
    result = tune(synthetic_dataset(8), strategy="lp-ft", backbone=str(tiny_text_model), epochs=2, batch_size=8,
                  patience=0, augment="none", tracking_uri="off", device="cpu", progress=False, n_trials=1,
                  space={"lr": [50.0]}, storage=f"sqlite:///{tmp_path / 's.db'}", work_dir=str(tmp_path / "work"))
    trial = optuna.load_study(study_name=result.study_name, storage=f"sqlite:///{tmp_path / 's.db'}").trials[0]
    assert trial.user_attrs.get("kept") == "probe"
    assert trial.intermediate_values  # the fine-tuning epochs, reported to the pruner, all below the probe
    assert trial.value > max(trial.intermediate_values.values())


def test_cv_objective_reports_per_fold(tiny_text_model: Path, tmp_path: Path) -> None:
    result = tune(synthetic_dataset(6), backbone=str(tiny_text_model), objective="cv", folds=3, n_trials=2,
                  device="cpu", progress=False, storage=f"sqlite:///{tmp_path / 'cv.db'}")
    assert result.n_complete == 2 and len(result.top[0]["fold_scores"]) == 3


def test_bad_search_spaces_fail_before_any_trial(tmp_path: Path) -> None:
    data = synthetic_dataset(4)
    with pytest.raises(ConfigError, match="learning_rate"):
        tune(data, space={"learning_rate": [0.1]}, storage=f"sqlite:///{tmp_path / 'a.db'}")
    with pytest.raises(ConfigError, match="lora.rank"):
        tune(data, strategy="lora", space={"lora.rank": {"low": 0, "high": 4}}, storage=f"sqlite:///{tmp_path / 'a.db'}")
    with pytest.raises(ConfigError, match="low .* must be below high"):
        tune(data, space={"probe_c": {"low": 2.0, "high": 1.0}})
    assert set(default_space("lora")) >= {"lr", "lora.rank"} and "probe_c" in default_space("linear-probe")


def test_killed_search_resumes_from_the_command_line(tiny_text_model: Path, tmp_path: Path) -> None:
    csv = write_synthetic_csv(tmp_path / "texts.csv", per_class=8)
    out = tmp_path / "tune"
    args = ["tune", str(csv), "--backbone", str(tiny_text_model), "--device", "cpu", "--cache-dir",
            str(tmp_path / "cache"), "--output", str(out), "--study-name", "s", "-q"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*CLI, *args, "--n-trials", "1000"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    storage = f"sqlite:///{(out / 'study.db').resolve()}"
    done: list = []
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            time.sleep(0.5)
            try:
                done = optuna.load_study(study_name="s", storage=storage).get_trials(
                    states=(optuna.trial.TrialState.COMPLETE,))
            except Exception:  # the study is not created yet
                continue
            if len(done) >= 3:
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert len(done) >= 3
    killed_at = {t.number: t.params for t in done}
    total = len(optuna.load_study(study_name="s", storage=storage).get_trials(
        states=(optuna.trial.TrialState.COMPLETE,))) + 2
    result = run(*args, "--n-trials", str(total))
    study = optuna.load_study(study_name="s", storage=storage)
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(complete) == total and f"{total} complete" in result.stdout
    assert all(study.trials[n].params == p for n, p in killed_at.items())  # earlier trials kept as they were
    best = yaml.safe_load((out / "best_config.yaml").read_text())
    assert best["data"] == str(csv) and "probe_c" in best
    import transferkit as tk
    from transferkit.config import load_config_file, make_config

    config = make_config(**{**load_config_file(out / "best_config.yaml"), "progress": False, "report": False, "tracking_uri": "off"})
    assert tk.fit(config=config).accuracy >= 0  # the saved configuration is ready to run


def test_the_top_trials_keep_their_weights_and_feed_a_greedy_soup(tiny_text_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "tune"
    result = tune(synthetic_dataset(8), strategy="finetune", backbone=str(tiny_text_model), epochs=2, batch_size=8,
                  patience=0, augment="none", tracking_uri="off", device="cpu", progress=False, n_trials=3, top_k=2,
                  pruning=False, soup=True, space={"lr": {"low": 1e-4, "high": 3e-2, "log": True}},
                  output=str(out), work_dir=str(tmp_path / "work"))
    kept = sorted(p.name for p in (out / "trials").iterdir() if p.is_dir())
    assert kept == sorted(f"trial-{row['trial']}" for row in result.top)  # the third trial's weights were deleted
    assert all(Path(row["model"]).is_dir() for row in result.top)
    import transferkit as tk

    for row in result.top:  # each kept model is the trial's: it scores the trial's value on the search's validation part
        model = tk.load_model(row["model"])
        assert json.loads((Path(row["model"]) / "metrics.json").read_text())["tune"]["objective"] == row["value"]
        assert model.strategy == "finetune"
    assert result.soup is not None and Path(result.soup["output"]).is_dir()
    assert result.soup["val_accuracy"] >= result.soup["best_single_val_accuracy"]  # greedy: never below its start
    assert result.soup["best_single_val_accuracy"] == pytest.approx(result.top[0]["value"])
    soup_model = tk.load_model(result.soup["output"])
    predictions = soup_model.predict(synthetic_dataset(2))
    assert len(predictions) == len(synthetic_dataset(2)) and set(predictions) <= set(soup_model.classes)


def test_keeping_models_is_refused_where_there_is_no_model_to_keep(tmp_path: Path) -> None:
    data = synthetic_dataset(4)
    with pytest.raises(ConfigError, match="--soup: give --output"):
        tune(data, strategy="finetune", soup=True, storage=f"sqlite:///{tmp_path / 'a.db'}")
    with pytest.raises(ConfigError, match="--keep-models: needs --objective val"):
        tune(data, strategy="finetune", keep_models=True, objective="cv", output=str(tmp_path / "o"))
    with pytest.raises(ConfigError, match="linear-probe trials"):
        tune(data, keep_models=True, output=str(tmp_path / "o"))
    assert not (tmp_path / "o" / "study.db").exists()  # refused before the study was opened


def test_two_workers_share_one_journal_study(tiny_text_model: Path, tmp_path: Path) -> None:
    csv = write_synthetic_csv(tmp_path / "texts.csv", per_class=8)
    journal = tmp_path / "shared" / "study.log"
    args = [*CLI, "tune", str(csv), "--backbone", str(tiny_text_model), "--device", "cpu", "--cache-dir",
            str(tmp_path / "cache"), "--storage", f"journal:{journal}", "--study-name", "shared", "--n-trials", "12",
            "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    workers = [subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    outputs = [w.communicate(timeout=300) for w in workers]
    assert all(w.returncode == 0 for w in workers), [err[-2000:] for _, err in outputs]
    results = [json.loads(out) for out, _ in outputs]
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    study = optuna.load_study(study_name="shared", storage=JournalStorage(JournalFileBackend(str(journal))))
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert 12 <= len(complete) <= 13  # the total is checked after each trial: a last trial may run on both
    assert sum(r["n_run_now"] for r in results) == len(study.trials)  # every trial ran once, in one of the two
    assert max(r["best_value"] for r in results) == max(t.value for t in complete)  # the last to finish saw all
