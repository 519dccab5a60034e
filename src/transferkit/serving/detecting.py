"""A loaded detection model folder that turns decoded RGB images into boxes, classes and scores.

The service runs it as it runs :class:`~transferkit.serving.predictor.Predictor`: one batch at a time, in the
micro-batcher's thread. A batch keeps every detection the network gives (score at least 0.05, FCOS's own floor);
each request then keeps those scoring at least its ``score_threshold`` (default 0.3, as ``predict``), so requests
with different thresholds still share one forward pass. Boxes are ``[x1, y1, x2, y2]`` in the uploaded image's
pixels, best score first: the records ``transferkit predict`` gives for the same image.
"""

from __future__ import annotations

import importlib
import json
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from transferkit.errors import ArtifactError, ConfigError
from transferkit.modalities import get_modality


def folder_predicts_records(folder: str | Path) -> bool:
    """Whether the model of ``folder`` answers with records of its own (a detector) rather than class
    probabilities: asked of its kind's model class, without loading the weights."""
    from transferkit.models.artifact_kinds import REGISTRY
    from transferkit.models.folder import read_config

    name = read_config(folder).get("kind", "single")
    kind = REGISTRY.find(name) if isinstance(name, str) else None
    if kind is None:
        return False  # an unknown kind: the loader names it
    module, _, name = kind.model_class.partition(":")
    return bool(getattr(getattr(importlib.import_module(module), name), "predicts_records", False))


def check_detector_runtime(folder: str | Path, runtime: str) -> None:
    """A detector is served with ``--runtime torch``; the ONNX file ``export`` writes takes one fixed image size."""
    if runtime != "torch":
        raise ConfigError(f"option 'runtime' (--runtime {runtime}): {folder} is an object detector, served with "
                          "--runtime torch; its ONNX file (transferkit export) takes images of one size and runs in "
                          "ONNX Runtime directly (docs/detection.md). Leave out --runtime.")


class DetectionPredictor:
    """Detections for batches of RGB :class:`PIL.Image.Image` objects; thread-safe (one batch runs at a time).

    :meth:`predict_batch` gives per image ``{"boxes": (n, 4), "labels": (n,), "scores": (n,)}`` (numpy), every
    detection scoring at least 0.05; :meth:`answers` turns them into the service's answer for one request.
    """

    #: The service answers with this predictor's records (boxes), not class probabilities.
    predicts_records = True
    task = "detection"

    def __init__(self, folder: str | Path, *, runtime: str = "torch", device: str = "cpu",
                 threads: int | None = None) -> None:
        import torch

        from transferkit.features.extract import resolve_device
        from transferkit.models.artifacts import load_model
        from transferkit.models.folder import read_config

        check_detector_runtime(folder, runtime)
        if threads:
            torch.set_num_threads(int(threads))
        self.folder = Path(folder)
        self.config = read_config(self.folder)
        self.model = load_model(self.folder)
        self.runtime = runtime
        self.device = str(resolve_device(device))
        self.classes: list[str] = list(self.model.classes)
        self.modality: str = self.model.modality
        self.checked = False
        self._lock = threading.Lock()

    def predict_batch(self, items: Sequence[Any]) -> list[dict[str, np.ndarray]]:
        """Every detection (score at least 0.05) of each image, one forward pass for the whole batch."""
        from transferkit.models.detector import EVALUATION_SCORE

        if not items:
            return []
        with self._lock:
            return self.model.detect(list(items), batch_size=len(items), device=self.device,
                                     score_threshold=EVALUATION_SCORE)

    def answers(self, found: Sequence[dict[str, np.ndarray]], names: Sequence[str],
                score_threshold: float) -> list[dict[str, Any]]:
        """One answer per image: ``index``, ``input`` (the file's name) and ``detections`` (``label``, ``score``,
        ``box``) scoring at least ``score_threshold``, best first."""
        from transferkit.models.detector import detection_list

        out = []
        for index, (name, image) in enumerate(zip(names, found)):
            keep = image["scores"] >= score_threshold
            kept = {k: v[keep] for k, v in image.items()}
            out.append({"index": index, "input": name, "detections": detection_list(kept, self.classes)})
        return out

    def problem(self, found: Sequence[dict[str, np.ndarray]], names: Sequence[str]) -> str | None:
        """What is wrong with the network's output for these images (non-finite boxes or scores, a class id
        outside the class list), or ``None``."""
        bad = [n for n, f in zip(names, found) if not (np.isfinite(f["boxes"]).all() and np.isfinite(f["scores"]).all())]
        if bad:
            return f"the model gave non-finite boxes or scores for {', '.join(bad)}"
        outside = [n for n, f in zip(names, found) if len(f["labels"]) and
                   (int(f["labels"].min()) < 0 or int(f["labels"].max()) >= len(self.classes))]
        if outside:
            return (f"the model gave class ids outside the {len(self.classes)} classes of config.json for "
                    f"{', '.join(outside)}")
        return None

    def warm_up(self) -> None:
        """One detection on a synthetic image, so that the first request does not pay for one-time set-up, and a
        check of what it gives (finite boxes and scores, class ids of config.json's classes); a folder that fails
        raises :class:`ArtifactError` here, before the service accepts a request."""
        problem = None
        if not self.classes or len(set(self.classes)) != len(self.classes):
            problem = "config.json's class list must hold one or more distinct names"
        else:
            problem = self.problem(self.predict_batch([get_modality(self.modality).warm_up_item()]),
                                   ["a synthetic image"])
        if problem:
            raise ArtifactError(f"{self.folder}: {problem}. The folder cannot be served; restore it from a backup "
                                "or save the model again (transferkit fit --output).")
        self.checked = True

    def info(self) -> dict[str, Any]:
        """The model card: a detector, its classes, backbone and input size, and its test mAP."""
        from transferkit.models.detector import PREDICT_SCORE

        test: dict[str, Any] = {}
        try:  # read on every call: the folder may have changed since the model loaded
            metrics = json.loads((self.folder / "metrics.json").read_text(encoding="utf-8"))
            test = (metrics.get("test") or {}) if isinstance(metrics, dict) else {}
        except (OSError, ValueError):
            test = {}
        try:
            model_card = (self.folder / "README.md").read_text(encoding="utf-8")
        except (OSError, ValueError):
            model_card = None
        spec = self.model.spec
        return {
            "name": self.folder.name,
            "task": self.task,
            "modality": self.modality,
            "classes": self.classes,
            "strategy": self.config.get("strategy"),
            "backbone": spec.get("backbone"),
            "detector": {"architecture": "FCOS", "image_size": spec.get("image_size"),
                         "pyramid_levels": spec.get("levels"), "channels": spec.get("channels")},
            "score_threshold": PREDICT_SCORE,
            "transferkit_version": self.config.get("transferkit_version"),
            "created": self.config.get("created"),
            "test_metrics": {k: test[k] for k in ("map_50", "map", "map_75", "mar_100", "images") if k in test},
            "model_card": model_card,
            "runtime": self.runtime,
        }
