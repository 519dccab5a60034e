"""Ensembles in output space: the mean of the members' outputs (class probabilities; for regression the values,
for multi-label the per-label probabilities), uniform or weighted.

Weighted: the weights ``w`` on the simplex minimise the validation log-loss of the mixture,
``-1/N sum_n log sum_m w_m P_m(y_n | x_n)`` (a convex problem in ``w``), parametrised as ``w = softmax(z)`` and
solved by L-BFGS from the uniform weights. The result is never worse than the uniform mean on the validation
log-loss (if the solver ended higher, the uniform weights are kept). Members may have different backbones.

Tasks without class probabilities fit the weights the same way on their own output loss of the weighted mean
(:meth:`~transferkit.tasks.base.Task.output_loss`: squared error of the averaged value, binary cross-entropy of the
averaged per-label probabilities; both convex in ``w``), with a numerical gradient.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from transferkit.errors import ConfigError
from transferkit.fusion._common import as_dataset, as_model, members_task, score_and_loss

ENSEMBLE_WEIGHTINGS = ("uniform", "fitted")


def mixture_log_loss(member_proba: np.ndarray, y: np.ndarray, weights: np.ndarray) -> float:
    """Mean negative log-likelihood of the mixture ``sum_m w_m P_m``; ``member_proba`` is ``(M, N, C)``."""
    picked = member_proba[:, np.arange(len(y)), y]  # (M, N)
    return float(-np.mean(np.log(np.clip(weights @ picked, 1e-12, None))))


def fit_ensemble_weights(member_proba: np.ndarray, y: np.ndarray, max_iter: int = 500) -> np.ndarray:
    """Weights ``(M,)`` on the simplex minimising :func:`mixture_log_loss` on ``(member_proba, y)``."""
    from scipy.optimize import minimize

    count = member_proba.shape[0]
    uniform = np.full(count, 1.0 / count)
    if count == 1:
        return uniform
    picked = np.clip(member_proba[:, np.arange(len(y)), y].astype(np.float64), 1e-12, None)  # (M, N)

    def objective(z: np.ndarray) -> tuple[float, np.ndarray]:
        w = np.exp(z - z.max())
        w /= w.sum()
        q = np.clip(w @ picked, 1e-300, None)
        loss = -np.mean(np.log(q))
        grad_w = -np.mean(picked / q, axis=1)
        return float(loss), w * (grad_w - w @ grad_w)

    solution = minimize(objective, np.zeros(count), jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    w = np.exp(solution.x - solution.x.max())
    w /= w.sum()
    if mixture_log_loss(member_proba, y, w) > mixture_log_loss(member_proba, y, uniform):
        return uniform
    return w


def fit_output_weights(member_proba: np.ndarray, loss: Any, max_iter: int = 200) -> np.ndarray:
    """Weights ``(M,)`` on the simplex minimising ``loss(sum_m w_m P_m)`` for member outputs ``(M, N, ...)``
    (``loss`` a convex function of the averaged outputs); the uniform weights when the solver does not beat them."""
    from scipy.optimize import minimize

    count = member_proba.shape[0]
    uniform = np.full(count, 1.0 / count)
    if count == 1:
        return uniform

    def weights(z: np.ndarray) -> np.ndarray:
        w = np.exp(z - z.max())
        return w / w.sum()

    def objective(z: np.ndarray) -> float:
        return float(loss(np.tensordot(weights(z), member_proba, axes=1)))

    solution = minimize(objective, np.zeros(count), method="L-BFGS-B", options={"maxiter": max_iter})
    w = weights(solution.x)
    return w if objective(solution.x) < objective(np.zeros(count)) else uniform


@dataclass
class EnsembleResult:
    model: Any
    weighting: str
    weights: list[float]
    members: list[dict[str, Any]]
    val: dict[str, Any] = field(default_factory=dict)
    output: Path | None = None

    measure: str = "accuracy"
    loss_name: str = "log_loss"

    def to_dict(self) -> dict[str, Any]:
        return {"method": f"{self.weighting} ensemble", "measure": self.measure, "weights": self.weights,
                "members": self.members, "val": self.val}

    def summary(self) -> str:
        lines = [f"{'member':<40}  weight  val {self.measure}"]
        for w, m in zip(self.weights, self.members):
            value = m.get(f"val_{self.measure}")
            lines.append(f"{m['name'][-40:]:<40}  {w:6.3f}  {value if value is not None else float('nan'):12.4f}")
        for key in ("uniform", "fitted"):
            if key in self.val:
                lines.append(f"{key + ' ensemble':<40}          {self.val[key][self.measure]:12.4f}  "
                             f"({self.loss_name} {self.val[key][self.loss_name]:.4f})")
        return "\n".join(lines)


def ensemble(models: Sequence[Any], val: Any = None, *, weighting: str = "fitted", output: str | Path | None = None,
             overwrite: bool = False, batch_size: int = 64, device: str = "auto", label_column: str | None = None,
             text_column: str | None = None, path_column: str | None = None, encoding: str = "utf-8",
             delimiter: str | None = None, normalize_labels: bool = False,
             progress: bool = False) -> EnsembleResult:
    """An ensemble of ``models`` (model folders or models; any backbones, one label set and modality).

    ``weighting = "fitted"`` fits the weights on ``val``; ``"uniform"`` averages (``val`` then only adds figures).
    """
    from transferkit.models.folder import check_output_folder
    from transferkit.models.combined import EnsembleModel

    if weighting not in ENSEMBLE_WEIGHTINGS:
        raise ConfigError(f"ensemble: weighting must be one of {', '.join(ENSEMBLE_WEIGHTINGS)}; got {weighting!r}.")
    if len(models) < 2:
        raise ConfigError(f"ensemble: give at least two models; got {len(models)}.")
    if output is not None:
        check_output_folder(output, overwrite, inputs=[("validation data", val),
                                                       *[("member model", m) for m in models]])
    names = [str(m) if isinstance(m, (str, Path)) else f"model {i}" for i, m in enumerate(models)]
    loaded = [as_model(m, f"ensemble model {i}") for i, m in enumerate(models)]
    task = members_task(loaded, names, "ensemble")
    uniform_model = EnsembleModel(loaded)  # checks modality and label sets
    val_ds = as_dataset(val, "validation", task=task, label_column=label_column, text_column=text_column,
                        path_column=path_column, encoding=encoding,
                        delimiter=delimiter, normalize_labels=normalize_labels, required=weighting == "fitted")
    members = [{"name": n, "backbone": getattr(m, "backbone", None) and m.backbone.name,
                "strategy": getattr(m, "strategy", None)} for n, m in zip(names, loaded)]
    weights = np.asarray(uniform_model.weights)
    figures: dict[str, Any] = {}
    if val_ds is not None:
        y = task.targets(val_ds, uniform_model.classes)
        member_proba = uniform_model.member_probabilities(val_ds, batch_size=batch_size, device=device, cache=None,
                                                          progress=progress)
        for info, proba in zip(members, member_proba):
            info[f"val_{task.measure}"], info[f"val_{task.output_loss_name}"] = score_and_loss(task, proba, y)
        if weighting == "fitted":
            weights = fit_ensemble_weights(member_proba, y) if task.calibrates else \
                fit_output_weights(member_proba, lambda averaged: task.output_loss(y, averaged))
        for key, w in (("uniform", np.asarray(uniform_model.weights)), ("fitted", weights)):
            if key == "fitted" and weighting != "fitted":
                continue
            score, loss = score_and_loss(task, np.tensordot(w, member_proba, axes=1), y)
            figures[key] = {task.measure: score, task.output_loss_name: loss}
    weights = weights / weights.sum()
    model = EnsembleModel(loaded, weights.tolist(), classes=uniform_model.classes)
    result = EnsembleResult(model, weighting, [float(w) for w in weights], members, figures,
                            measure=task.measure, loss_name=task.output_loss_name)
    if output is not None:
        from transferkit.models.artifact_kinds import save_ensemble

        result.output = save_ensemble(model, output, metrics={"fusion": result.to_dict()}, run_config=result.to_dict(),
                                      overwrite=overwrite, keep_beside=True,
                                      extra_files={"ensemble.json": json.dumps(result.to_dict(), indent=2) + "\n",
                                                   "summary.txt": result.summary() + "\n"})
    return result
