"""Plots, the self-contained HTML report of a run folder, and experiment tracking (MLflow).

- :func:`write_report` (``transferkit report RUN_DIR``) reads a run folder and writes one HTML file with every
  image embedded; the files it reads are listed in ``docs/reports.md``;
- :func:`fit_evidence` is what ``fit`` saves beside a model so that its report can show examples and mistakes
  (``predictions.csv``, ``examples.json``);
- :func:`track_run` logs a finished run (parameters, metrics, the report, the model folder) to MLflow;
  :func:`report_and_track` is the end of any verb that saved a folder: its report, then its MLflow run.

Heavy modules (matplotlib, mlflow) load inside the functions that use them.
"""

from __future__ import annotations

from transferkit.reporting.evidence import EXAMPLES_FILE, PREDICTIONS_FILE, fit_evidence
from transferkit.reporting.report import REPORT_FILE, build_report, write_report
from transferkit.reporting.tracking import report_and_track, track_run

__all__ = ["EXAMPLES_FILE", "PREDICTIONS_FILE", "REPORT_FILE", "build_report", "report_and_track", "fit_evidence",
           "track_run", "write_report"]
