"""Training safety and option checking: non-finite values and diverging runs, --resume against changed options,
options a strategy ignores, rank's candidate checks, soups of mismatched models, adapt's tracking, and bad option
values through every training verb (each a clear error naming the option, exit 2, no traceback)."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import transferkit as tk
from conftest import TINY_IMAGE_BACKBONE
from transferkit.cli.main import _register_commands, app
from transferkit.config import make_config
from transferkit.errors import ArtifactError, BackboneError, ConfigError, DataError, TrainingDivergedError

_register_commands()


def cli(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_user_error(result, *fragments: str) -> None:
    """Exit 2, an ``error:`` line holding every fragment, no traceback."""
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    error = next((line for line in result.output.splitlines() if line.startswith("error: ")), "")
    for fragment in fragments:
        assert fragment in error, f"{fragment!r} not in {error!r}"


FIT = ("fit", "--backbone", TINY_IMAGE_BACKBONE, "--device", "cpu", "--tracking-uri", "off", "--image-size", "32")


# --- 1. non-finite values, diverging training, non-finite outputs -------------------------------------------

@pytest.mark.parametrize("build, values, option", [
    ("fit", {"lr": float("inf")}, "'lr'"),
    ("fit", {"head_lr": float("nan")}, "'head_lr'"),
    ("fit", {"mixup": "inf"}, "'mixup'"),
    ("fit", {"lora": {"alpha": float("inf")}}, "'lora.alpha'"),
    ("fit", {"l2sp": {"beta": float("nan")}}, "'l2sp.beta'"),
    ("fit", {"probe_c": float("inf")}, "'probe_c'"),
    ("adapt", {"tradeoff": float("nan")}, "'tradeoff'"),
    ("adapt", {"tradeoffs": {"dann": [0.1, float("inf")]}}, "'tradeoffs.dann.1'"),
    ("multitask", {"tasks": [{"name": "a"}], "temperature": float("inf")}, "'temperature'"),
    ("tune", {"timeout": float("inf")}, "'timeout'"),
    ("distill", {"distill": {"temperature": float("inf")}}, "'distill.temperature'"),
])
def test_every_config_refuses_non_finite_numbers_naming_the_option(build, values, option) -> None:
    from transferkit.strategies.distill_setup import make_distill_config
    from transferkit.strategies.adaptation.config import make_adapt_config
    from transferkit.strategies.multitask_options import make_multitask_config
    from transferkit.tuning.search import make_tune_config

    builders = {"fit": make_config, "adapt": make_adapt_config, "multitask": make_multitask_config,
                "tune": make_tune_config, "distill": make_distill_config}
    with pytest.raises(ConfigError) as info:
        builders[build](**values)
    assert option in str(info.value) and "finite" in str(info.value)


def test_fit_lr_inf_is_refused_before_any_work(image_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    result = cli(*FIT, image_folder, "--strategy", "finetune", "--lr", "inf", "--output", out)
    assert_user_error(result, "option 'lr'", "finite number")
    assert not out.exists()


def test_a_nan_training_loss_stops_the_run_and_saves_no_model(image_folder: Path, tmp_path: Path) -> None:
    out, work = tmp_path / "model", tmp_path / "work"
    result = cli(*FIT, image_folder, "--strategy", "finetune", "--lr", "1e30", "--epochs", "2", "--batch-size", "4",
                 "--baselines", "raw", "--work-dir", work, "--output", out)
    assert_user_error(result, "training loss became nan", "epoch 1", "learning rate", "--lr", "no model was saved")
    assert "learning rate far above" in result.output  # the warning before training
    assert not (out / "config.json").exists() and not (out / "model.safetensors").exists()
    assert not list(work.rglob("final-weights.pt"))


def _engine_run(tmp_path: Path, lr: float, epochs: int = 3):
    from transferkit.engine.data import LabelledCollate, LabelledExamples
    from transferkit.engine.plan import TrainingPlan
    from transferkit.engine.settings import EngineSettings
    from transferkit.engine.trainer import run_training

    rng = np.random.default_rng(0)
    X = rng.normal(size=(96, 6)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.ReLU(), torch.nn.Linear(12, 2))
    settings = EngineSettings(work_dir=tmp_path / "run", epochs=epochs, batch_size=8, lr=lr, patience=0,
                              tracking_uri="off", progress=False, device="cpu")
    collate = LabelledCollate(torch.stack)
    return run_training(model, TrainingPlan(), LabelledExamples(X[:72], y[:72], torch.from_numpy),
                        LabelledExamples(X[72:], y[72:], torch.from_numpy), settings, train_collate=collate,
                        val_collate=collate)


def test_a_loss_far_above_its_start_gives_one_divergence_warning(tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _engine_run(tmp_path / "high", lr=30.0)
    diverging = [str(w.message) for w in caught if "training is diverging" in str(w.message)]
    assert len(diverging) == 1 and "lower --lr" in diverging[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _engine_run(tmp_path / "usual", lr=1e-3)
    assert not [w for w in caught if "diverging" in str(w.message) or "learning rate far above" in str(w.message)]


def test_on_a_device_the_loss_is_checked_per_window_and_names_its_batches() -> None:
    from transferkit.engine.loss_watch import LossWatch

    watch = LossWatch("run", lr=0.1, window=4)
    for batch, value in enumerate([0.7, 0.6, float("nan")]):  # no check inside the window (no device sync)
        watch.observe(torch.tensor(value), epoch=1, batch=batch, every_step=False)
    with pytest.raises(TrainingDivergedError, match=r"at epoch 2 \(batches 1-4\).*lower --lr .*e\.g\. to 0\.01"):
        watch.observe(torch.tensor(0.5), epoch=1, batch=3, every_step=False)
    first = LossWatch("run", lr=0.1)
    with pytest.raises(TrainingDivergedError, match="before any update, so the learning rate is not the cause"):
        first.observe(torch.tensor(float("inf")), epoch=0, batch=0, every_step=False)


def test_non_finite_features_are_an_error_naming_the_examples(image_folder: Path, tmp_path: Path) -> None:
    from transferkit.backbones import create_backbone
    from transferkit.data.sources import load_data
    from transferkit.features.cache import FeatureCache
    from transferkit.features.extract import extract_features
    from transferkit.estimators.linear_probe import LinearProbe

    backbone = create_backbone(TINY_IMAGE_BACKBONE, image_size=32)
    with torch.no_grad():
        next(backbone.parameters()).fill_(float("nan"))
    backbone.invalidate_digest()
    data = load_data(str(image_folder))
    cache_dir = tmp_path / "cache"
    with pytest.raises(BackboneError) as info:
        extract_features(backbone, data, cache=FeatureCache(cache_dir), batch_size=8, device="cpu", progress=False)
    assert f"18 of 18 examples of {data.origin}" in str(info.value) and "NaN" in str(info.value)
    assert not list(cache_dir.rglob("*.npy")) and not list(cache_dir.rglob("*.npz"))  # nothing cached
    features = np.ones((6, 4))
    features[3, 1] = np.inf
    with pytest.raises(DataError, match=r"X holds NaN or infinite values in 1 rows \(first: row 3\)"):
        LinearProbe().fit(features, [0, 1] * 3)


def test_predict_refuses_a_model_whose_outputs_are_not_finite(image_folder: Path, tmp_path: Path) -> None:
    from transferkit.models.artifacts import save_model

    fitted = tk.fit(str(image_folder), backbone=TINY_IMAGE_BACKBONE, image_size=32, device="cpu", progress=False,
                    tracking_uri="off", baselines=["raw"])
    with torch.no_grad():
        for parameter in fitted.model.head.parameters():
            parameter.fill_(float("nan"))
    with pytest.raises(ArtifactError, match="model in memory: its probabilities are NaN or infinite for 6 of 6"):
        tk.predict(fitted.model, str(image_folder / "cat"), device="cpu", progress=False)
    folder = tmp_path / "broken"
    save_model(fitted.model, folder, include_backbone=True)
    result = cli("predict", folder, image_folder / "cat")
    assert_user_error(result, str(folder), "NaN or infinite")
    assert "NaN" not in result.stdout and "Infinity" not in result.stdout


# --- 2. --resume ---------------------------------------------------------------------------------------------

class _Interrupt:
    """A Lightning callback that crashes the run at the start of a batch (an interruption)."""

    def __new__(cls, epoch: int, batch: int):
        import lightning.pytorch as pl

        class Interrupt(pl.Callback):
            def on_train_batch_start(self, trainer, pl_module, batch_, batch_idx) -> None:
                if trainer.current_epoch == epoch and batch_idx == batch:
                    raise RuntimeError("interrupted")  # a crash in the middle of the run

        return Interrupt()


@pytest.fixture
def interrupted_run(image_folder: Path, tmp_path: Path):
    """A finetune run stopped in its second epoch (its first epoch's checkpoint on disk), and the CLI options
    that started it."""
    from transferkit.api import load_splits
    from transferkit.backbones import create_backbone
    from transferkit.strategies.run import train_with_strategy

    work = tmp_path / "work"
    options = ["--strategy", "finetune", "--epochs", "2", "--batch-size", "4", "--patience", "0",
               "--baselines", "raw", "--work-dir", str(work)]
    config = make_config(data=str(image_folder), backbone=TINY_IMAGE_BACKBONE, strategy="finetune", epochs=2,
                         batch_size=4, patience=0, image_size=32, device="cpu", tracking_uri="off",
                         work_dir=str(work), progress=False)
    train, val, _ = load_splits(str(image_folder), None, None, config)
    torch.manual_seed(config.seed)
    backbone = create_backbone(TINY_IMAGE_BACKBONE, image_size=32)
    with pytest.raises(RuntimeError, match="interrupted"):
        train_with_strategy(config, backbone, train, val, train.classes, callbacks=[_Interrupt(epoch=1, batch=0)])
    checkpoint = work / "finetune" / "checkpoints" / "last.ckpt"
    assert checkpoint.is_file()
    return options, checkpoint


def test_resume_with_changed_options_is_refused_listing_each_change(interrupted_run, image_folder: Path,
                                                                     tmp_path: Path) -> None:
    options, checkpoint = interrupted_run
    before = checkpoint.read_bytes()
    out = tmp_path / "model"
    args = [a for a in FIT if a not in ("--image-size", "32")]
    result = cli(*args, image_folder, *options, "--image-size", "64", "--lr", "0.05", "--resume", "--output", out)
    assert_user_error(result, "--resume", "--image-size: 32 -> 64", "--lr: 0.0001 -> 0.05", "without --resume",
                      "--work-dir")
    assert checkpoint.read_bytes() == before  # the interrupted run is still there to resume
    assert not out.exists()


def test_resume_with_the_same_options_keeps_the_whole_training_log(interrupted_run, image_folder: Path,
                                                                   tmp_path: Path) -> None:
    options, _ = interrupted_run
    out = tmp_path / "model"
    result = cli(*FIT, image_folder, *options, "--resume", "--output", out)
    assert result.exit_code == 0, result.output
    with open(out / "training_log.csv", newline="") as handle:
        epochs = {int(row["epoch"]) for row in csv.DictReader(handle) if row.get("val_accuracy")}
    assert epochs == {0, 1}  # the epoch before the interruption is kept
    history = json.loads((out / "metrics.json").read_text())["training"]["history"]
    assert [row["epoch"] for row in history] == [0, 1]


# --- 3. options a strategy ignores -----------------------------------------------------------------------------

def test_training_flags_with_the_linear_probe_are_a_warning_naming_them(image_folder: Path) -> None:
    result = cli(*FIT, image_folder, "--epochs", "3", "--lr", "0.1", "--lora-rank", "4", "--baselines", "raw")
    assert result.exit_code == 0, result.output
    warned = [line for line in result.output.splitlines() if line.startswith("warning: --strategy linear-probe")]
    assert len(warned) == 1
    for fragment in ("--epochs", "--lr", "--lora-rank", "used by finetune", "used by lora"):
        assert fragment in warned[0]


def test_options_of_other_strategies_are_named_and_contradictions_refused(image_folder: Path) -> None:
    config = make_config(strategy="lora", finetune={"freeze": 2}, l2sp={"alpha": 0.5}, probe_c=1.0, lr=1e-3)
    assert set(config.unused_options()) == {"finetune.freeze", "l2sp.alpha", "probe_c"}
    assert make_config(strategy="linear-probe", epochs=3, baselines=["raw", "scratch"]).unused_options() == {}
    result = cli(*FIT, image_folder, "--init-from", image_folder / "weights.safetensors")
    assert_user_error(result, "linear-probe does not use --init-from", "--strategy finetune")


def test_adapt_and_multitask_name_options_their_run_ignores() -> None:
    from transferkit.strategies.adaptation.config import make_adapt_config
    from transferkit.strategies.multitask_options import make_multitask_config

    adapt_config = make_adapt_config(method="dann", weighting="kmm", threshold_start=0.9, adapt_epochs=3,
                                     tradeoffs={"coral": [1.0]})
    assert set(adapt_config.unused_options()) == {"weighting", "threshold_start", "adapt_epochs", "tradeoffs"}
    with pytest.warns(UserWarning, match=r"adapt: this run ignores weighting \(used by method iw\)"):
        adapt_config.warn_unused_options()
    assert make_adapt_config(method="auto", weighting="kmm", tradeoff=0.5).unused_options() == {}
    multitask_config = make_multitask_config(tasks=[{"name": "a", "weight": 2.0}], temperature=3.0,
                                             weighting="uncertainty")
    with pytest.warns(UserWarning, match=r"ignores temperature .*sampling is proportional.*task\(s\) a"):
        multitask_config.warn_unused_options()


def test_tune_refuses_a_search_space_over_options_the_strategy_ignores(image_folder: Path, tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    space = tmp_path / "space.yaml"
    space.write_text("lora.rank: [4, 8]\n")
    result = cli("tune", image_folder, "--backbone", TINY_IMAGE_BACKBONE, "--strategy", "finetune", "--space", space,
                 "--output", tmp_path / "study", "--device", "cpu")
    assert_user_error(result, "does not use lora.rank", "same model")
    assert not (tmp_path / "study" / "study.db").exists()


# --- 4. rank checks every candidate first --------------------------------------------------------------------

def test_rank_checks_every_candidate_name_before_running_any(image_folder: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    result = cli("rank", image_folder, "--candidates", f"{TINY_IMAGE_BACKBONE},no_such_model,timm:no_such_arch",
                 "--cache-dir", cache, "--device", "cpu")
    assert_user_error(result, "2 of 3 backbones cannot be used", "'no_such_model'", "'timm:no_such_arch'",
                      "nothing was run")
    assert not cache.exists()  # the first candidate did not run


# --- 5. soups of models that prepare their inputs differently -------------------------------------------------

def test_soup_refuses_members_trained_at_different_image_sizes(image_folder: Path, tmp_path: Path) -> None:
    small, large = tmp_path / "small", tmp_path / "large"
    for folder, size in ((small, 32), (large, 48)):
        tk.fit(str(image_folder), backbone=TINY_IMAGE_BACKBONE, image_size=size, device="cpu", progress=False,
               tracking_uri="off", baselines=["raw"], output=str(folder), report=False)
    out = tmp_path / "soup"
    result = cli("fuse", small, large, "--method", "soup", "--val", image_folder, "--output", out)
    assert_user_error(result, str(small), str(large), "input_size 32", "48", "--method ensemble")
    assert not out.exists()


# --- 6. adapt --tracking-uri ---------------------------------------------------------------------------------

def test_adapt_takes_a_tracking_uri(text_csv: Path, tiny_text_model: Path, tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    out, store = tmp_path / "adapted", tmp_path / "mlflow.db"
    uri = f"sqlite:///{store}"
    result = cli("adapt", "--source", text_csv, "--target", text_csv, "--method", "source-probe", "--embedding",
                 "none", "--backbone", tiny_text_model, "--tracking-uri", uri, "--output", out, "--quiet")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "tracking.json").read_text())["tracking_uri"] == uri and store.is_file()


# --- 7. bad option values through every training verb ----------------------------------------------------------

BAD_OPTIONS = [
    (("fit", "{img}", "--strategy", "finetune", "--epochs", "0"), ("option 'epochs'", "greater than 0")),
    (("fit", "{img}", "--batch-size", "0"), ("option 'batch_size'",)),
    (("fit", "{img}", "--test-fraction", "1.5"), ("option 'test_fraction'", "less than 1")),
    (("fit", "{img}", "--shots", "0"), ("option 'shots'",)),
    (("fit", "{img}", "--strategy", "magic"), ("option 'strategy'", "'linear-probe'")),
    (("fit", "{img}", "--config", "{bad_yaml}"), ("option 'epochs'", "valid integer", "unknown option 'colour'")),
    (("fit", "{img}", "--strategy", "finetune", "--devices", "0"), ("option 'devices'",)),
    (("fit", "{img}", "--num-workers", "-1"), ("option 'num_workers'",)),
    (("fit", "{img}", "--device", "tpu9"), ("--device 'tpu9'", "cpu, cuda, cuda:N")),
    (("fit", "{img}", "--seed", "99999999999"), ("option 'seed'",)),
    (("cv", "{img}", "--confidence", "nan"), ("option 'confidence'",)),
    (("cv", "{img}", "--strategy", "finetune", "--epochs", "-1"), ("option 'epochs'",)),
    (("tune", "{img}", "--n-trials", "0"), ("option 'n_trials'",)),
    (("tune", "{img}", "--tune-val-fraction", "1"), ("option 'val_fraction'",)),
    (("tune", "{txt}", "--backbone", TINY_IMAGE_BACKBONE), (f"backbone '{TINY_IMAGE_BACKBONE}' takes image input",
                                                            "text backbones")),
    (("adapt", "--source", "{img}", "--target", "{img}", "--epochs", "0"), ("option 'epochs'",)),
    (("adapt", "--source", "{img}", "--target", "{img}", "--lr", "inf"), ("option 'lr'", "finite")),
    (("adapt", "--source", "{img}", "--target", "{img}", "--method", "magic"), ("option 'method'",)),
    (("distill", "{img}", "--teacher", "{img}", "--temperature", "inf"), ("option 'distill.temperature'",)),
    (("distill", "{img}", "--teacher", "{img}", "--alpha", "2"), ("option 'distill.alpha'",)),
    (("multitask", "{mt_yaml}"), ("option 'batch_size'", "option 'epochs'")),
    (("fuse", "{img}", "--method", "interpolate", "--alphas", "0,x", "--val", "{img}"), ("--alphas: 'x'",)),
    (("fuse", "--method", "stack", "--backbones", TINY_IMAGE_BACKBONE, "--top", "0", "--train", "{img}"),
     ("--top must be at least 1",)),
    (("compress", "{img}", "--data", "{img}", "--recovery-lr", "inf"), ("--recovery-lr",)),
    (("rank", "{img}", "--batch-size", "0"), ("option 'batch_size'",)),
]


@pytest.mark.parametrize("args, fragments", BAD_OPTIONS, ids=[" ".join(a[:1] + a[-2:]) for a, _ in BAD_OPTIONS])
def test_bad_option_values_are_clear_errors_in_every_verb(args, fragments, image_folder: Path, text_csv: Path,
                                                          tmp_path: Path) -> None:
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("epochs: [1, 2]\ncolour: red\n")
    mt_yaml = tmp_path / "multitask.yaml"
    mt_yaml.write_text(f"tasks:\n  - name: a\n    data: {image_folder}\nepochs: 0\nbatch_size: 0\n")
    filled = [a.format(img=image_folder, txt=text_csv, bad_yaml=bad_yaml, mt_yaml=mt_yaml) for a in args]
    assert_user_error(cli(*filled), *fragments)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without a GPU")
@pytest.mark.parametrize("verb", [("fit", "{img}", "--backbone"), ("cv", "{img}", "--backbone"),
                                  ("rank", "{img}", "--candidates"),
                                  ("adapt", "--source", "{img}", "--target", "{img}", "--backbone")])
def test_device_cuda_without_a_gpu_is_refused_before_any_work(verb, image_folder: Path) -> None:
    result = cli(*[a.format(img=image_folder) for a in verb], TINY_IMAGE_BACKBONE, "--device", "cuda")
    assert_user_error(result, "--device cuda", "no CUDA GPU", "--device cpu")
