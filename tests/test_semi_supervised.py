"""``fit --unlabelled``: curriculum pseudo-labels on the probe, the class-mix check, the labelled-only row and its
verdict, and the strategies that refuse it. Real probes on real features; tiny data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import TINY_IMAGE_BACKBONE, write_image_folder
from transferkit.cli.main import _register_commands, app
from transferkit.estimators.pseudo_labels import curriculum_pseudo_labels, select_confident

_register_commands()


def _blobs(per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1.0, size=(3, 20))
    y = np.repeat(np.arange(3), per_class)
    return centres[y] + rng.normal(0, 1.3, size=(len(y), 20)), y


def test_pseudo_labels_raise_accuracy_with_two_labels_per_class() -> None:
    from transferkit.tasks import get_task

    task = get_task("classification")
    wins = 0
    for seed in range(3):
        X, y = _blobs(2, seed)
        X_u, _ = _blobs(100, seed)
        X_u = X_u[np.random.default_rng(seed).permutation(len(X_u))]
        X_test, y_test = _blobs(100, seed)
        plain = task.new_probe(C=1.0).fit(X, y)
        semi, facts = curriculum_pseudo_labels(lambda: task.new_probe(C=1.0), X, y, X_u, rounds=5)
        wins += (semi.predict(X_test) == y_test).mean() > (plain.predict(X_test) == y_test).mean()
        assert facts.added[-1] >= 0.9 * len(X_u) and facts.added == sorted(facts.added)
    assert wins >= 2


def test_each_round_admits_the_most_confident_per_class_in_the_labelled_mix() -> None:
    proba = np.array([[0.9, 0.1], [0.6, 0.4], [0.8, 0.2], [0.3, 0.7], [0.45, 0.55], [0.7, 0.3]])
    rows = select_confident(proba, 4 / 6, np.array([0.5, 0.5]))
    assert sorted(rows.tolist()) == [0, 2, 3, 4]  # two per class, the most probable of each


@pytest.fixture
def halves(tmp_path: Path) -> tuple[Path, Path]:
    labelled = write_image_folder(tmp_path / "labelled", per_class=6, seed=1)
    pool = write_image_folder(tmp_path / "pool", per_class=8, seed=2)
    unlabelled = tmp_path / "unlabelled"
    unlabelled.mkdir()
    for path in pool.rglob("*.png"):
        shutil.copy(path, unlabelled / f"{path.parent.name}-{path.name}")
    return labelled, unlabelled


def test_fit_reports_the_labelled_only_probe_beside_the_pseudo_labelled_one(halves, tmp_path: Path) -> None:
    import transferkit as tk

    labelled, unlabelled = halves
    result = tk.fit(str(labelled), unlabelled=str(unlabelled), backbone=TINY_IMAGE_BACKBONE, baselines=[],
                    output=str(tmp_path / "model"), report=False, progress=False)
    assert "labelled-only" in result.baselines
    assert any(c.baseline == "labelled-only" for c in result.comparisons)
    facts = json.loads((tmp_path / "model" / "metrics.json").read_text())["pseudo_labels"]
    assert facts["unlabelled"] == 24 and len(facts["added"]) == 5 and isinstance(facts["used"], bool)
    assert facts["mix_distance"] < 0.25
    assert "labelled-only" in result.summary()


def test_a_differently_mixed_unlabelled_set_is_a_warning(halves, tmp_path: Path) -> None:
    import transferkit as tk

    labelled, unlabelled = halves
    for path in unlabelled.iterdir():
        if not path.name.startswith("cat"):
            path.unlink()
    with pytest.warns(UserWarning, match="differently mixed"):
        tk.fit(str(labelled), unlabelled=str(unlabelled), backbone=TINY_IMAGE_BACKBONE, baselines=[],
               report=False, progress=False)


def test_unlabelled_with_a_training_strategy_is_refused_before_work(halves, tmp_path: Path) -> None:
    labelled, unlabelled = halves
    result = CliRunner().invoke(app, ["fit", str(labelled), "--unlabelled", str(unlabelled), "-s", "finetune",
                                      "-b", TINY_IMAGE_BACKBONE, "-o", str(tmp_path / "model")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "option 'unlabelled'" in result.output and "--strategy linear-probe" in result.output
    assert not (tmp_path / "model").exists()
