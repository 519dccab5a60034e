"""The error hierarchy.

Every error a user can cause derives from :class:`TransferkitError`; the subclasses also derive from the
built-in exception a Python user would expect (``ValueError``, ``FileNotFoundError``, ``LookupError``), so
``except ValueError`` keeps working. Messages name the file, row or option, say what was expected, and how to fix it.
The CLI prints these without a traceback.
"""

from __future__ import annotations


class TransferkitError(Exception):
    """Base class of every error transferkit raises on purpose."""


class ConfigError(TransferkitError, ValueError):
    """An option or a config file is wrong (unknown key, wrong type, value out of range)."""


class DataError(TransferkitError, ValueError):
    """The data cannot be used as given (bad file, bad row, too few classes, unseen labels, ...)."""


class DataNotFoundError(DataError, FileNotFoundError):
    """A data path does not exist."""


class BackboneError(TransferkitError, LookupError):
    """A backbone name cannot be resolved, or its weights are not available here."""


class ArtifactError(TransferkitError, ValueError):
    """A saved model folder is missing files, was tampered with, or is not a transferkit model."""


class OutputError(TransferkitError, OSError):
    """An output could not be written (no space left, no permission) while saving; nothing already there was
    changed."""


class ExportError(ArtifactError):
    """A model could not be exported, or the exported file does not compute what the original computes."""


class NotFittedError(TransferkitError, AttributeError):
    """An estimator was used before ``fit``."""


class TrainingDivergedError(ConfigError):
    """Training stopped because the loss became NaN or infinite; the options of the run (learning rate, precision)
    are the usual cause, so it is a :class:`ConfigError` and no model is saved."""
