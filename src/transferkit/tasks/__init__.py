"""The task registry: task names -> :class:`~transferkit.tasks.base.Task` objects.

A task says what a label is and what follows from it (head, loss, probe, metrics, verdict, predict output); a run
names its task in its config (``task: classification``) and every verb asks the entry instead of testing the name.
A new task is one module beside :mod:`transferkit.tasks.classification` and one reference in ``_BUILTINS``.
Nothing heavy is imported here: entries import torch, scikit-learn and the evaluation code when a hook runs.
"""

from __future__ import annotations

from typing import Any

from transferkit._registry import Registry
from transferkit.tasks.base import HOOKS, Task

#: The task of runs and models that do not name one (every model saved before tasks were recorded).
DEFAULT_TASK = "classification"

#: The built-in tasks in registration order: ``"module:Class"`` references, loaded on first use of the registry
#: (an entry's hooks use the data and evaluation layers, which ask this registry: a reference is not an import
#: circle).
_BUILTINS = (
    "transferkit.tasks.classification:SingleLabelClassification",
    "transferkit.tasks.regression:Regression",
    "transferkit.tasks.multilabel:MultiLabelClassification",
)


def _check(entry: object) -> None:
    if not isinstance(entry, Task):
        raise TypeError(f"register_task takes a Task instance; got {type(entry).__name__}.")


REGISTRY: Registry[Task] = Registry("task", "task", check=_check, builtins=_BUILTINS)


def register_task(task: Task, *, replace: bool = False) -> Task:
    """Add ``task`` under ``task.name``; a name already taken is an error unless ``replace``."""
    return REGISTRY.register(task, replace=replace)


def get_task(name: str, *, option: str = "task") -> Task:
    """The task registered as ``name``; an unknown name is a ConfigError naming ``option`` and the known tasks."""
    return REGISTRY.get(name, option=option)


def task_names() -> list[str]:
    """The registered task names, in registration order."""
    return REGISTRY.names()


def task_of(model: object) -> Task:
    """The task a loaded model was trained for (its ``task`` attribute; models of kinds that do not record one,
    ensembles and stacked features, are single-label classifiers)."""
    return get_task(getattr(model, "task", DEFAULT_TASK))



def __getattr__(name: str) -> Any:
    # TASKS: name -> entry, every built-in loaded (the registry's own dict, so registering shows in it)
    if name == "TASKS":
        return REGISTRY.mapping()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["DEFAULT_TASK", "HOOKS", "TASKS", "Task", "get_task", "register_task", "task_names", "task_of"]
