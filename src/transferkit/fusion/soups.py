"""Model soups (Wortsman et al. 2022, "Model soups: averaging weights of multiple fine-tuned models improves
accuracy without increasing inference time").

Fine-tuned runs of one architecture from the same pretrained start (for example the runs of a hyper-parameter
search) often lie in one basin of the loss, where their weight average is a better model than each of them:

- **uniform soup**: ``theta = (1/K) sum_k theta_k``;
- **greedy soup**: the ingredients sorted by validation accuracy, best first; starting from the best, each next
  run is added (the soup being the uniform average of the runs kept) only if the soup's validation accuracy
  improves, or stays the same while its validation log loss falls. (Accuracy and log-loss are the task's measure
  and output loss: for regression R² and squared error, for multi-label example F1 and binary cross-entropy.) The result is never worse on validation
  accuracy than the best single run. The tie-break matters on small validation sets, where accuracy moves in
  steps of 1/n: on 80 examples, a strict-accuracy rule kept none of four tuning trials whose uniform soup was
  1.2 points better in-domain and 3.6 better on a shifted domain (benchmarks/tune_soup.py).
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from transferkit.errors import ConfigError
from transferkit.fusion._common import (as_dataset, check_same_architecture, cpu_state, load_state, members_task,
                                        predict_kwargs, score_and_loss, single_models, weighted_state)

log = logging.getLogger("transferkit")
SOUPS = ("greedy", "uniform")


@dataclass
class SoupResult:
    """The soup, which ingredients it holds, and the validation figures of each ingredient and of the soup."""

    model: Any
    method: str
    ingredients: list[dict[str, Any]]
    used: list[int]
    val_accuracy: float | None
    val_log_loss: float | None
    steps: list[dict[str, Any]] = field(default_factory=list)
    output: Path | None = None
    #: The task's measure that ``val_accuracy`` holds (accuracy for classifiers) and its output loss's name.
    measure: str = "accuracy"
    loss_name: str = "log_loss"

    @property
    def best_ingredient_accuracy(self) -> float | None:
        values = [i[f"val_{self.measure}"] for i in self.ingredients if i.get(f"val_{self.measure}") is not None]
        return max(values) if values else None

    def to_dict(self) -> dict[str, Any]:
        return {"method": f"{self.method} soup", "measure": self.measure, "ingredients": self.ingredients,
                "used": self.used, f"val_{self.measure}": self.val_accuracy,
                f"val_{self.loss_name}": self.val_log_loss, "steps": self.steps,
                f"best_ingredient_val_{self.measure}": self.best_ingredient_accuracy}

    def summary(self) -> str:
        lines = [f"{'ingredient':<40}  {'val ' + self.measure:>12}  in soup"]
        for index, item in enumerate(self.ingredients):
            value = item.get(f"val_{self.measure}")
            lines.append(f"{item['name'][-40:]:<40}  {value if value is not None else float('nan'):12.4f}  "
                         f"{'yes' if index in self.used else 'no'}")
        if self.val_accuracy is not None:
            lines.append(f"{self.method + ' soup':<40}  {self.val_accuracy:12.4f}  ({len(self.used)} runs)")
        return "\n".join(lines)


def uniform_soup_state(states: Sequence[dict]) -> dict:
    """``(1/K) sum_k theta_k``."""
    return weighted_state(states, [1.0 / len(states)] * len(states))


def soup(models: Sequence[Any], val: Any = None, *, method: str = "greedy", output: str | Path | None = None,
         overwrite: bool = False, batch_size: int = 64, device: str = "auto", label_column: str | None = None,
         text_column: str | None = None, path_column: str | None = None, encoding: str = "utf-8",
         delimiter: str | None = None, normalize_labels: bool = False,
         progress: bool = False) -> SoupResult:
    """A ``greedy`` or ``uniform`` soup of ``models`` (model folders or models of one architecture, one label set).

    ``val`` is required for the greedy soup; for the uniform soup it only adds validation figures.
    """
    from transferkit.models.folder import check_output_folder

    if method not in SOUPS:
        raise ConfigError(f"soup: method must be one of {', '.join(SOUPS)}; got {method!r}.")
    if len(models) < 2:
        raise ConfigError(f"soup: give at least two fine-tuned models; got {len(models)}.")
    if output is not None:
        check_output_folder(output, overwrite, inputs=[("validation data", val),
                                                       *[("ingredient model", m) for m in models]])
    names = [str(m) if isinstance(m, (str, Path)) else f"model {i}" for i, m in enumerate(models)]
    loaded = single_models(models, "soup")
    task = members_task(loaded, names, "soup")
    check_same_architecture(loaded, names, "soup")
    val_ds = as_dataset(val, "validation", task=task, label_column=label_column, text_column=text_column,
                        path_column=path_column, encoding=encoding,
                        delimiter=delimiter, normalize_labels=normalize_labels, required=method == "greedy")
    states = [cpu_state(m) for m in loaded]
    working = copy.deepcopy(loaded[0])
    kwargs = predict_kwargs(batch_size, device, progress)
    y = task.targets(val_ds, working.classes) if val_ds is not None else None

    def score(state: dict) -> tuple[float, float] | tuple[None, None]:
        if val_ds is None:
            return None, None
        load_state(working, state)
        return score_and_loss(task, working.predict_proba(val_ds, **kwargs), y)

    ingredients, ingredient_figures = [], []
    for name, state in zip(names, states):
        accuracy, loss = score(state)
        ingredient_figures.append((accuracy, loss))
        ingredients.append({"name": name, f"val_{task.measure}": accuracy, f"val_{task.output_loss_name}": loss})
    steps: list[dict[str, Any]] = []
    if method == "uniform":
        used = list(range(len(states)))
        accuracy, loss = score(uniform_soup_state(states))
    else:
        order = sorted(range(len(states)), key=lambda i: (-ingredient_figures[i][0], ingredient_figures[i][1], i))
        used = [order[0]]
        accuracy, loss = ingredient_figures[order[0]]
        for candidate in order[1:]:
            trial_accuracy, trial_loss = score(uniform_soup_state([states[i] for i in used + [candidate]]))
            added = trial_accuracy > accuracy or (trial_accuracy == accuracy and trial_loss < loss)
            steps.append({"candidate": candidate, "name": names[candidate], f"soup_val_{task.measure}": trial_accuracy,
                          f"soup_val_{task.output_loss_name}": trial_loss, "added": added})
            log.info("greedy soup: %s -> %s %.4f (%s)", names[candidate], task.measure, trial_accuracy,
                     "added" if added else "left out")
            if added:
                used.append(candidate)
                accuracy, loss = trial_accuracy, trial_loss
    load_state(working, uniform_soup_state([states[i] for i in used]))
    working.strategy = f"{method}-soup"
    working.interval = None  # an ingredient's prediction interval was calibrated for its own weights
    result = SoupResult(working, method, ingredients, sorted(used), accuracy, loss, steps,
                        measure=task.measure, loss_name=task.output_loss_name)
    if output is not None:
        from transferkit.models.artifacts import save_model

        result.output = save_model(working, output, metrics={"fusion": result.to_dict()}, run_config=result.to_dict(),
                                   overwrite=overwrite, include_backbone=True, keep_beside=True,
                                   extra_files={"soup.json": json.dumps(result.to_dict(), indent=2) + "\n",
                                                "summary.txt": result.summary() + "\n"})
    return result
