"""The registry of model-folder kinds: load_model and save_any ask it; unknown kinds are refused naming the folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import transferkit as tk
from transferkit.errors import ArtifactError
from transferkit.models import artifact_kinds
from transferkit.models.artifact_kinds import ArtifactKind, artifact_kind_names, kind_of, register_artifact_kind
from transferkit.models.artifacts import load_model, save_any
from transferkit.models.folder import write_model_folder


class Marked:
    """A model class of a kind registered by the test."""

    def __init__(self, value: float) -> None:
        self.value = value


def _save_marked(model: Marked, folder, **options) -> Path:
    return write_model_folder(folder, {"value": torch.tensor([model.value])}, {"format_version": 2, "kind": "marked"},
                              metrics=options.get("metrics"), run_config=options.get("run_config"),
                              overwrite=options.get("overwrite", False), card=lambda config: "# marked\n")


def _load_marked(folder: Path, config: dict, task: str | None) -> Marked:
    from safetensors.torch import load_file

    return Marked(float(load_file(str(folder / "model.safetensors"))["value"][0]))


@pytest.fixture
def marked_kind(monkeypatch):
    monkeypatch.setattr(artifact_kinds.REGISTRY, "_entries", dict(artifact_kinds.REGISTRY.mapping()))
    return register_artifact_kind(ArtifactKind("marked", f"{__name__}:Marked", _save_marked, _load_marked))


def _folder_of_kind(folder: Path, kind: str) -> Path:
    return write_model_folder(folder, {"value": torch.zeros(1)}, {"format_version": 2, "kind": kind}, metrics=None,
                              run_config=None, overwrite=False, card=lambda config: "# test\n")


def test_the_built_in_kinds():
    assert artifact_kind_names() == ["single", "multitask", "ensemble", "stacked", "detection", "recommender"]
    assert kind_of(object()).name == "single"


def test_a_registered_kind_is_saved_and_loaded_through_the_registry(marked_kind, tmp_path: Path):
    folder = save_any(Marked(2.5), tmp_path / "marked")
    assert kind_of(Marked(0.0)) is marked_kind
    loaded = tk.load_model(folder)
    assert isinstance(loaded, Marked) and loaded.value == 2.5
    assert "marked" in artifact_kind_names()


def test_an_unknown_kind_is_refused_naming_the_folder_and_the_known_kinds(tmp_path: Path):
    folder = _folder_of_kind(tmp_path / "hologram", "hologram")
    with pytest.raises(ArtifactError) as caught:
        load_model(folder)
    message = str(caught.value)
    assert str(folder) in message and "'hologram'" in message
    assert "known: single, multitask, ensemble, stacked" in message and "newer transferkit" in message


def test_a_task_for_a_kind_without_tasks_is_refused(marked_kind, tmp_path: Path):
    folder = save_any(Marked(1.0), tmp_path / "marked")
    with pytest.raises(ArtifactError, match=r"task='colour' was given, but this is a marked model"):
        load_model(folder, task="colour")
    assert load_model(folder).value == 1.0  # nothing was changed by the refusal
