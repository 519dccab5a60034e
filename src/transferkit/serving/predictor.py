"""A loaded model folder that turns decoded inputs (RGB images, texts) into class probabilities.

Two runtimes compute the same probabilities (to about 1e-5): ``torch`` (the model as :func:`load_model` gives it,
with the fast frozen-CNN path of the feature extractor) and ``onnx`` (ONNX Runtime on the model's logits graph:
``MODEL/model.onnx`` when ``transferkit export`` wrote one, else a checked export kept in the transferkit cache).
Both prepare inputs with the backbone's own preprocessing, so a served model sees what it saw in training.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from transferkit.errors import ArtifactError, ConfigError
from transferkit.modalities import get_modality

log = logging.getLogger("transferkit")

RUNTIMES = ("torch", "onnx")


def onnx_path_for(folder: str | Path) -> Path:
    """The ONNX file the ``onnx`` runtime uses for a model folder: its own ``model.onnx`` if that is a logits graph,
    else ``TRANSFERKIT_CACHE/serving/<weights sha256>.onnx``."""
    from transferkit.models.folder import read_config, WEIGHTS_FILE

    folder = Path(folder)
    own = folder / "model.onnx"
    if own.is_file():
        from transferkit.compress.onnx import read_metadata

        try:
            if read_metadata(own).get("output") == "logits":
                return own
        except Exception:  # not readable as ONNX: fall back to an export of our own
            pass
    from transferkit.backbones.packaged import cache_root

    digest = read_config(folder)["files"][WEIGHTS_FILE]
    return cache_root() / "serving" / f"{digest[:32]}.onnx"


def prepare_onnx(folder: str | Path) -> Path:
    """Make sure the ``onnx`` runtime's file exists (export it, checked against PyTorch, if not); returns its path.
    Run once before starting several workers, so that they do not all export at once."""
    path = onnx_path_for(folder)
    if not path.is_file():
        from transferkit.models.artifacts import load_model
        from transferkit.compress.onnx import export_model

        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        export_model(load_model(folder), partial)
        partial.replace(path)
        log.info("serve: exported the model to ONNX at %s", path)
    return path


class Predictor:
    """Class probabilities for batches of decoded inputs; thread-safe (one batch runs at a time).

    ``predict_proba(items)`` takes RGB :class:`PIL.Image.Image` objects (image models) or strings (text models)
    and returns ``(len(items), len(classes))`` float32 rows in ``classes`` order.
    """

    def __init__(self, folder: str | Path, *, runtime: str = "torch", device: str = "cpu",
                 threads: int | None = None) -> None:
        from transferkit.models.artifacts import load_model
        from transferkit.models.folder import read_config

        if runtime not in RUNTIMES:
            raise ConfigError(f"runtime must be one of {', '.join(RUNTIMES)}; got {runtime!r}.")
        if runtime == "onnx" and device not in ("cpu", "auto"):
            raise ConfigError(f"runtime onnx runs on the CPU; got device {device!r}. Use --device cpu or --runtime torch.")
        import torch

        if threads:
            torch.set_num_threads(int(threads))
        self.folder = Path(folder)
        self.config = read_config(self.folder)
        kind = self.config.get("kind", "single")
        if kind != "single":
            raise ConfigError(f"{self.folder} is a {kind} model; the service serves single models (written by fit, "
                              "adapt, distill or compress) and detectors. Predict with it through `transferkit "
                              "predict`, or serve one of its members.")
        self.model = load_model(self.folder)
        self.runtime = runtime
        self.device = device
        self.classes: list[str] = list(self.model.classes)
        self.modality: str = self.model.modality
        self.temperature = float(getattr(self.model, "temperature", 1.0) or 1.0)
        self.checked = False  # set by warm_up() once the model gave a valid prediction
        self._lock = threading.Lock()
        self._session = None
        self._torch_device = None
        if runtime == "torch":
            from transferkit.features.extract import resolve_device

            self._torch_device = resolve_device(device)
            self.model.eval()
            self.model.backbone.to(self._torch_device)  # the head runs on the CPU, on the pooled features
            if self._torch_device.type == "cpu" and get_modality(self.modality).channels_last:
                self.model.backbone.to(memory_format=torch.channels_last)
        if runtime == "onnx":
            from transferkit.backbones.onnx_graph import onnx_session

            self.onnx_file = prepare_onnx(self.folder)
            self._session = onnx_session(self.onnx_file, threads)

    def _dataset(self, items: Sequence[Any]):
        from transferkit.data.dataset import Dataset

        return Dataset(self.modality, list(items), None, "request", [f"item {i}" for i in range(len(items))])

    def predict_proba(self, items: Sequence[Any]) -> np.ndarray:
        if not items:
            return np.zeros((0, len(self.classes)), np.float32)
        with self._lock:
            return self._torch_proba(items) if self._session is None else self._onnx_proba(items)

    def _torch_proba(self, items: Sequence[Any]) -> np.ndarray:
        """One forward pass over the whole request batch: the backbone's own prepare / collate, then the feature
        path of :func:`~transferkit.features.extract.forward_batch` (the fast frozen CNN on the CPU) and the head
        with the model's temperature, as :meth:`TransferModel.predict_proba` computes them."""
        import torch

        from transferkit.features.extract import forward_batch

        backbone = self.model.backbone
        batch = backbone.batch_to(backbone.collate([backbone.prepare(item) for item in items]), self._torch_device)
        use_amp = self._torch_device.type == "cuda"
        with torch.inference_mode(), torch.autocast(self._torch_device.type, enabled=use_amp, dtype=torch.float16):
            features = forward_batch(backbone, batch).float().cpu().numpy()
        return self.model.head_proba(features).astype(np.float32, copy=False)

    def _onnx_proba(self, items: Sequence[Any]) -> np.ndarray:
        from transferkit.backbones.onnx_graph import onnx_feed
        from transferkit.features.extract import batches_in_order, restore_order

        backbone = self.model.backbone
        loader, order = batches_in_order(backbone, self._dataset(items), batch_size=len(items))
        logits = np.concatenate([self._session.run(None, onnx_feed(batch, self.modality))[0] for batch in loader])
        from transferkit.tasks import task_of

        logits = restore_order(logits, order).astype(np.float64)
        return np.asarray(task_of(self.model).proba_from_outputs(logits, self.temperature), dtype=np.float32)

    def warm_up(self) -> None:
        """One prediction on a synthetic input, so that the first request does not pay for one-time set-up, and a
        check of what it gives: one finite probability per class of ``config.json``, summing to 1. A folder that
        fails (a class list that disagrees with the head, weights that give NaN) raises :class:`ArtifactError`
        here, before the service accepts a request, instead of failing every request."""
        from transferkit.tasks import task_of

        problem = self._class_list_problem()
        if problem is None:
            proba = self.predict_proba([get_modality(self.modality).warm_up_item()])
            if proba.shape != (1, len(self.classes)):
                problem = (f"the model gives {proba.shape[-1]} probabilities per input but config.json lists "
                           f"{len(self.classes)} classes")
            elif not np.isfinite(proba).all():
                problem = "the model gives non-finite probabilities (NaN or infinity): its weights are damaged"
            elif task_of(self.model).calibrates and abs(float(proba.sum()) - 1.0) > 1e-3:  # class probabilities
                problem = f"the model's probabilities sum to {float(proba.sum()):.4f}, not 1"
        if problem:
            raise ArtifactError(f"{self.folder}: {problem}. The folder cannot be served; restore it from a backup "
                                "or save the model again (transferkit fit --output).")
        self.checked = True

    def _class_list_problem(self) -> str | None:
        classes = self.classes
        if not classes or not all(isinstance(c, str) and c for c in classes):
            return "config.json's class list must hold one or more non-empty names"
        if len(set(classes)) != len(classes):
            twice = sorted({c for c in classes if classes.count(c) > 1})
            return f"config.json lists the class(es) {', '.join(map(repr, twice))} more than once"
        width = getattr(getattr(self.model, "head", None), "num_classes", None)
        if isinstance(width, int) and width != len(classes):
            return f"config.json lists {len(classes)} classes but the head in model.safetensors has {width} outputs"
        return None

    def info(self) -> dict[str, Any]:
        """The model card: what the model is, its classes and preprocessing, and its test metrics."""
        backbone = self.config.get("backbone", {})
        card = self.folder / "README.md"
        metrics_file = self.folder / "metrics.json"
        test: dict[str, Any] = {}
        try:  # the files are read on every call: the folder may have changed, or gone, since the model loaded
            metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
            test = (metrics.get("test") or {}) if isinstance(metrics, dict) else {}
        except (OSError, ValueError):
            test = {}
        try:
            model_card = card.read_text(encoding="utf-8")
        except (OSError, ValueError):
            model_card = None
        return {
            "name": self.folder.name,
            "modality": self.modality,
            "classes": self.classes,
            "strategy": self.config.get("strategy"),
            "backbone": backbone.get("name"),
            "num_features": backbone.get("num_features"),
            "preprocessing": backbone.get("preprocessing"),
            "temperature": self.temperature,
            "transferkit_version": self.config.get("transferkit_version"),
            "created": self.config.get("created"),
            "test_metrics": {k: test[k] for k in ("accuracy", "macro_f1", "n") if isinstance(test, dict) and k in test},
            "model_card": model_card,
            "runtime": self.runtime,
        }
