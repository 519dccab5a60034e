"""The options a training run was started with, kept in its work folder so that ``--resume`` can check them.

A resumed run continues the interrupted run's checkpoint: its weights, optimiser and schedule. Resuming with other
options (another learning rate, image size, data) would continue the old run while the saved model's
``run_config.yaml`` records the new options: a false record. So a fresh run writes the options that decide its
training (:data:`RECORD` in its folder) before it trains, and a resumed one compares its own with them and refuses
any difference, naming each changed option with its old and new value.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping

from transferkit.errors import ConfigError
from transferkit.options import flag_name
from transferkit.tasks import DEFAULT_TASK

RECORD = "run_options.json"

#: Options added after runs began recording theirs -> the value a record without them implies (a run interrupted
#: before the option existed resumes as long as this run keeps that value).
IMPLIED_BY_OLDER_RECORDS = {"task": DEFAULT_TASK}


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"lora": {"rank": 8}}`` -> ``{"lora.rank": 8}``; values made JSON-plain (tuples become lists)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = json.loads(json.dumps(value, default=str))
    return out


def training_options(values: Mapping[str, Any], exclude: Iterable[str], **facts: Any) -> dict[str, Any]:
    """The options that decide a run's training: ``values`` (a config's ``model_dump()``) flattened, less the
    ``exclude``d ones (paths of outputs, logging, devices: what does not change the trained weights), plus
    ``facts`` such as fingerprints of the data actually trained on."""
    skipped = set(exclude)
    kept = {k: v for k, v in values.items() if k not in skipped}
    return {**flatten(kept), **flatten(facts)}


def _shown(value: Any) -> str:
    return "default" if value is None else json.dumps(value) if not isinstance(value, str) else value


def write_record(folder: Path, options: Mapping[str, Any]) -> None:
    """Keep ``options`` in ``folder`` (a fresh run, before it trains)."""
    from transferkit._io import atomic_write_text

    atomic_write_text(Path(folder) / RECORD, json.dumps(dict(options), indent=1, sort_keys=True) + "\n")


def check_resume(folder: Path, options: Mapping[str, Any]) -> None:
    """A resumed run: its ``options`` must be those the interrupted run recorded in ``folder``; a
    :class:`ConfigError` lists every difference (old -> new) and how to go on. A run that recorded nothing (an
    older version) is resumed with a warning, and the options are recorded now."""
    path = Path(folder) / RECORD
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        warnings.warn(f"--resume: the interrupted run in {folder} did not record its options; they cannot be "
                      "checked against this run's (it continues with these).", stacklevel=2)
        write_record(folder, options)
        return
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--resume: cannot read {path} ({exc}); start a fresh run without --resume.") from None
    current = flatten(options)
    recorded = {**{k: v for k, v in IMPLIED_BY_OLDER_RECORDS.items() if k in current}, **recorded}
    changed = [name for name in sorted(set(recorded) | set(current)) if recorded.get(name) != current.get(name)]
    if changed:
        listed = "; ".join(f"{flag_name(n)}: {_shown(recorded.get(n))} -> {_shown(current.get(n))}" for n in changed)
        raise ConfigError(
            f"--resume: the interrupted run in {folder} was started with other options ({listed}). Resuming would "
            "continue the old training under the new options' record. Give the same options as the interrupted "
            "run to continue it, or start a fresh run: without --resume, or with another --work-dir (or --output)."
        )
