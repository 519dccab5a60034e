"""Options shared by the verbs, declared once: how data is read, where and how a run computes, where it writes.

Each verb's config (:class:`~transferkit.config.FitConfig`, ...) is composed of these bases and its own fields.
A field is the one declaration of an option: its type, default, bounds and help text (``description``). The CLI's
flags are generated from the fields (:mod:`transferkit.cli.options`), so a YAML key and its flag share a name
(``batch_size`` / ``--batch-size``) and a verb offers every option of its config.

Light on purpose (pydantic only): ``transferkit --help`` builds the flags from these classes without importing torch.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from transferkit.errors import ConfigError

ConfigT = TypeVar("ConfigT", bound=BaseModel)

#: Sections of a config whose options have flags without the section's name (``finetune.freeze`` is ``--freeze``,
#: ``distill.temperature`` is ``--temperature``); the options of other sections carry it (``lora.rank`` is
#: ``--lora-rank``).
UNPREFIXED_SECTIONS = ("finetune", "distill")


#: Options whose flag is not their name: the task type (``task: regression``) is ``--task-type``, because ``--task``
#: of evaluate, predict and export picks one task of a multi-task model; the contrastive strategy's temperature and
#: top layers kept the short flags they were introduced with.
RENAMED_FLAGS = {"task": "--task-type", "contrastive.temperature": "--temperature",
                 "contrastive.top_layers": "--top-layers"}


def flag_name(option: str) -> str:
    """The command-line spelling of an option: ``lr`` -> ``--lr``, ``lora.rank`` -> ``--lora-rank``,
    ``finetune.freeze`` -> ``--freeze``, ``task`` -> ``--task-type``; entries that are not options (``training
    data``) stay as they are."""
    if " " in option:
        return option
    if option in RENAMED_FLAGS:
        return RENAMED_FLAGS[option]
    section, _, name = option.rpartition(".")
    if section in UNPREFIXED_SECTIONS:
        option = name
    return "--" + option.replace(".", "-").replace("_", "-")


class Options(BaseModel):
    """Base of every config: unknown keys are errors, values are checked on assignment too, no NaN or infinity."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class DataOptions(Options):
    """How a labelled table or folder is read."""

    label_column: str | None = Field(None, description="label column of a table (default: label, class, category, target); for multi-label data several 0/1 columns, comma-separated (drama,comedy,horror: a row's labels are the columns holding 1)")
    text_column: str | None = Field(None, description="text column of a table (default: text, sentence, review, content)")
    path_column: str | None = Field(None, description="image-path column of a table (default: path, image, filepath, file); relative paths are relative to the table")
    encoding: str = Field("utf-8", description="text encoding of table files (a UTF-8 byte-order mark is removed; UTF-16 is recognised by its byte-order mark)")
    delimiter: str | None = Field(None, description="delimiter of CSV/TSV tables: one character, or tab; default: detected among , ; tab |")
    normalize_labels: bool = Field(False, description="fold labels that differ only in case, whitespace or Unicode form (Positive / positive) into their most frequent spelling instead of refusing them")


class RuntimeOptions(Options):
    """Where and how a run computes: seed, batches, device, the feature cache, progress."""

    seed: int = Field(0, ge=0, le=2**32 - 1, description="seed of every random choice (splits, sampling, folds)")
    batch_size: int = Field(64, gt=0, description="examples per backbone forward pass; for training strategies, the global training batch (split across processes)")
    num_workers: int = Field(0, ge=0, description="data-loader worker processes for image decoding")
    device: str = Field("auto", description="cpu, cuda, cuda:1, ... or auto")
    cache_dir: str | None = Field(None, description="feature cache folder (default: $TRANSFERKIT_CACHE/features or ~/.cache/transferkit/features)")
    no_cache: bool = Field(False, description="do not read or write the feature cache")
    progress: bool = Field(True, description="show progress of long steps (the CLI's --quiet turns it off)")
    runtime: Literal["auto", "torch", "onnx"] = Field("auto", description="frozen feature extraction on the CPU: auto (ONNX Runtime from 1,000 examples when it is installed, PyTorch otherwise), torch, or onnx (the backbone exported once into the cache)")
    processes: int = Field(1, ge=1, description="CPU processes extracting frozen features (each a share of the examples, one thread each on a machine of as many cores); the features are those of one process")


class OutputOptions(Options):
    """Where a run writes, and whether it may replace what is there."""

    output: str | None = Field(None, description="folder for the saved model; nothing is saved when not given (Python API)")
    overwrite: bool = Field(False, description="replace a model already in the output folder")
    report: bool = Field(True, description="write report.html (configuration, data, learning curves, metrics and verdict, confusion matrix, hardest mistakes) into the output folder at the end")


def describe_validation(exc: ValidationError, config_class: type[BaseModel], origin: str, *,
                        name_flags: bool = False) -> str:
    """One sentence per problem of ``exc``: the option (and, with ``name_flags``, its flag), what was wrong and the
    value given; an unknown option lists the allowed ones (those of its section, for a section's option)."""
    lines = []
    for error in exc.errors():
        option = ".".join(str(p) for p in error["loc"]) or "(config)"
        if error["type"] == "extra_forbidden":
            owner = config_class
            for part in error["loc"][:-1]:  # a section's (or a list item's) own options
                field = owner.model_fields.get(str(part)) if isinstance(part, str) else None
                annotation = getattr(field, "annotation", None)
                inner = get_args(annotation)[0] if get_args(annotation) else annotation
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    owner = inner
            allowed = ", ".join(field.alias or name for name, field in owner.model_fields.items())
            lines.append(f"unknown option '{option}'; allowed options are: {allowed}")
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
            if not error["loc"] and message.startswith("option '"):  # a check across options names its own
                lines.append(message)
                continue
            flag = f" ({flag_name(option)})" if name_flags and option.replace(".", "").replace("_", "").isalpha() else ""
            lines.append(f"option '{option}'{flag}: {message} (got {error.get('input')!r})")
    return f"{origin}: " + "; ".join(lines)


def build_options(config_class: type[ConfigT], origin: str = "options", **values: Any) -> ConfigT:
    """``config_class(**values)``, its validation problems turned into one :class:`ConfigError` that names each
    option, its flag and the value given (``origin``: the file or "options" the values came from)."""
    try:
        return config_class(**values)
    except ValidationError as exc:
        raise ConfigError(describe_validation(exc, config_class, origin, name_flags=True)) from None
