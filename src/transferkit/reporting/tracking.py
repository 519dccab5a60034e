"""Experiment tracking: every finished run is one MLflow run with its parameters, metrics, report and model.

The store is the training engine's: ``tracking_uri`` (a ``FitConfig`` option, ``--tracking-uri``) or, when not
given, ``$TRANSFERKIT_TRACKING_URI``, else one SQLite file in the transferkit cache
(:func:`transferkit.strategies.run.default_tracking_uri`); ``off`` disables tracking. Runs of the training strategies already have an MLflow run opened by the engine (its
parameters and per-epoch metrics are logged while training); the test metrics, the report and the model folder are
added to that same run. A linear-probe run, which has no engine, gets a new run with the same content.

Tracking never loses a result: if the store cannot be reached the run is still saved, with a warning.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("transferkit")

EXPERIMENT = "transferkit"
TRACKING_FILE = "tracking.json"


def resolve_tracking_uri(value: str | None) -> str | None:
    """The MLflow tracking URI a run uses: ``value``, else the engine's default (``$TRANSFERKIT_TRACKING_URI``, else
    the SQLite store in the transferkit cache); ``None`` when that is ``off``."""
    if not value:
        from transferkit.strategies.run import default_tracking_uri

        value = default_tracking_uri()
    return None if value.strip().lower() in ("off", "none", "") else value


def _artifact_location(uri: str) -> str | None:
    """New experiments of a SQLite store keep their artifacts beside the database file (not in the working dir)."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).parent / "artifacts").resolve().as_uri()
    return None


def flat_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The numbers of a ``metrics.json`` mapping worth comparing across runs, as ``{name: value}``."""
    out: dict[str, float] = {}
    test = metrics.get("test") or {}
    for key in ("accuracy", "macro_f1"):
        if isinstance(test.get(key), (int, float)):
            out[f"test_{key}"] = float(test[key])
    for name, values in (metrics.get("baselines") or {}).items():
        for key in ("accuracy", "macro_f1"):
            if isinstance(values.get(key), (int, float)):
                out[f"baseline_{name}_{key}"] = float(values[key])
    for comparison in metrics.get("comparisons") or []:
        name = comparison.get("baseline")
        for key in ("difference", "ci_low", "ci_high"):
            if isinstance(comparison.get(key), (int, float)):
                out[f"vs_{name}_{key}"] = float(comparison[key])
    for name, seconds in (metrics.get("timings_s") or {}).items():
        if isinstance(seconds, (int, float)):
            out[f"seconds_{name}"] = float(seconds)
    return out


def track_run(*, tracking_uri: str | None, params: dict[str, Any], metrics: dict[str, Any],
              folder: str | Path | None = None, report: str | Path | None = None, run_id: str | None = None,
              run_name: str = "fit", experiment: str = EXPERIMENT, tags: dict[str, str] | None = None,
              notes: list[str] | None = None) -> str | None:
    """Log a finished run to MLflow; returns its run id (``None`` when tracking is off or failed).

    ``run_id`` continues a run the engine opened (its parameters are already there); otherwise a new run is made in
    ``experiment`` with ``params`` (nested options flattened to ``a.b`` keys). ``metrics`` is the ``metrics.json``
    mapping (see :func:`flat_metrics`); a training history in it is logged per epoch for new runs. ``report`` (a
    file) is logged at the run's top level, ``folder`` (the saved model) under ``model/``; when ``folder`` is given
    ``tracking.json`` (URI, experiment, run id) is written into it afterwards. A store that cannot be reached is a
    warning and a line in ``notes``, never an error: the saved run stands.
    """
    uri = resolve_tracking_uri(tracking_uri)
    if uri is None:
        return None
    try:
        from mlflow.entities import Metric, Param
        from mlflow.tracking import MlflowClient
    except ImportError:
        if tracking_uri:  # asked for by name: say why nothing was logged; by default, tracking is simply skipped
            log.warning("tracking: mlflow is not installed (`pip install 'transferkit[train]'`); the run is not "
                        "tracked in %s.", tracking_uri)
        return None
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        client = MlflowClient(tracking_uri=uri)
        now = int(time.time() * 1000)
        if run_id is None:
            found = client.get_experiment_by_name(experiment)
            experiment_id = found.experiment_id if found is not None else client.create_experiment(
                experiment, artifact_location=_artifact_location(uri))
            run = client.create_run(experiment_id, run_name=run_name, tags=tags or {})
            run_id = run.info.run_id
            from transferkit.engine.trainer import flatten_params

            flat = [Param(k[:250], "" if v is None else str(v)) for k, v in flatten_params(params).items()]
            for start in range(0, len(flat), 100):
                client.log_batch(run_id, params=flat[start:start + 100])
            history = ((metrics.get("training") or {}).get("history")) or []
            epoch_metrics = [Metric(key, float(value), now, int(row.get("epoch", step)))
                             for step, row in enumerate(history) for key, value in row.items()
                             if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool)]
            for start in range(0, len(epoch_metrics), 500):
                client.log_batch(run_id, metrics=epoch_metrics[start:start + 500])
        else:
            for key, value in (tags or {}).items():
                client.set_tag(run_id, key, value)
        values = [Metric(k, v, now, 0) for k, v in flat_metrics(metrics).items()]
        if values:
            client.log_batch(run_id, metrics=values)
        if report is not None and Path(report).is_file():
            client.log_artifact(run_id, str(report))
        if folder is not None:
            client.log_artifacts(run_id, str(folder), artifact_path="model")
        client.set_terminated(run_id)
    except Exception as exc:  # the store is down, a permission problem, ...: the saved model stays valid
        detail = (str(exc).strip().splitlines() or [""])[0]
        note = (f"tracking: could not log the run to {uri} ({type(exc).__name__}: {detail}); the "
                f"{'model is' if folder is not None else 'results are'} saved all the same.")
        log.warning("%s", note)
        if notes is not None:
            notes.append(note)
        return None
    if folder is not None:
        from transferkit._io import atomic_write_json

        atomic_write_json(Path(folder) / TRACKING_FILE, {"tracking_uri": uri, "experiment": experiment,
                                                        "run_id": run_id})
    log.info("tracked: MLflow run %s in %s", run_id, uri)
    return run_id


def report_and_track(folder: str | Path | None, *, params: dict[str, Any], metrics: dict[str, Any],
               tracking_uri: str | None = None, report: bool = True, run_id: str | None = None,
               run_name: str = "run", tags: dict[str, str] | None = None,
               notes: list[str] | None = None) -> str | None:
    """The end of any run that saved ``folder`` (fit, adapt, distill, tune, ...): its report (unless ``report`` is
    false), then its MLflow run (see :func:`track_run`). ``params`` are the run's resolved options, ``metrics`` its
    ``metrics.json`` mapping. Both steps come after the result was saved and are optional: a failure of either (a
    missing or broken matplotlib, an unreachable store) is a one-line warning and a line in ``notes``, and the
    saved result stands. Returns the MLflow run id, or ``None``."""
    from transferkit.models.folder import late_step

    notes = notes if notes is not None else []
    saved = "the model is saved" if folder is not None and (Path(folder) / "config.json").is_file() else \
        "the results are saved"
    report_path = None
    if folder is not None and report:
        def write() -> Path:
            try:
                from transferkit.reporting.report import write_report

                return write_report(folder, explain_mistakes=0)  # `transferkit report` explains, on demand
            except ImportError as exc:
                raise ImportError(f"{exc}; install matplotlib (`pip install 'transferkit[report]'`) or pass "
                                  "--no-report") from exc

        report_path = late_step("the report", write, notes, saved=saved)
    tags = dict(tags or {})
    if folder is not None:
        tags["transferkit.output"] = str(Path(folder).resolve())
    return late_step("tracking", lambda: track_run(
        tracking_uri=tracking_uri, params=params, metrics=metrics, folder=folder, report=report_path, run_id=run_id,
        run_name=run_name, tags=tags, notes=notes), notes, saved=saved)


def record_fit(config: Any, result: Any, metrics: dict[str, Any], notes: list[str] | None = None) -> str | None:
    """What ``fit`` does at its end: :func:`report_and_track` with the engine's MLflow run when it trained one."""
    training = (result.config.get("training") or {}).get("training") or {}
    run_id = training.get("mlflow_run_id") if training.get("mlflow_uri") else None
    tags = {"transferkit.strategy": str(result.config.get("strategy")),
            "transferkit.backbone": str(result.config.get("backbone")),
            "transferkit.version": str(result.config.get("transferkit_version"))}
    return report_and_track(result.output, params=result.config, metrics=metrics, tracking_uri=config.tracking_uri,
                            report=config.report, run_id=run_id, tags=tags, notes=notes,
                            run_name=f"{result.config.get('backbone')} {result.config.get('strategy')}")


def read_tracking(folder: str | Path) -> dict[str, Any] | None:
    """The ``tracking.json`` of a model folder (URI, experiment, run id), or ``None``."""
    path = Path(folder) / TRACKING_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
