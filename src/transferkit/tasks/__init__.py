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


#: Tasks whose examples are not one label cell each (object detection: images with boxes in annotation files) run
#: ``fit`` by a workflow of their own: task name -> ``"module:function"`` of that workflow, called as
#: ``function(config, data, val, test)``. Their names are valid ``task`` values but not entries of the registry (the
#: per-example hooks of :class:`Task` do not apply to them).
WORKFLOW_TASKS = {"detection": "transferkit.workflows.detect:fit_detector"}


def task_workflow(name: str) -> Any:
    """The function that runs ``fit`` for task ``name`` when it has a workflow of its own (see
    :data:`WORKFLOW_TASKS`), else ``None``."""
    import importlib

    reference = WORKFLOW_TASKS.get(name)
    if reference is None:
        return None
    module, _, function = reference.partition(":")
    return getattr(importlib.import_module(module), function)


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

__all__ = ["DEFAULT_TASK", "HOOKS", "TASKS", "Task", "WORKFLOW_TASKS", "get_task", "register_task", "task_names",
           "task_of", "task_workflow"]
