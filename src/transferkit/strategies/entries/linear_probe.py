"""``linear-probe``: logistic regression on the frozen backbone's cached features (fit's probe path)."""

from __future__ import annotations

from transferkit.strategies.registry import Strategy

ENTRY = Strategy(
    name="linear-probe",
    description="frozen backbone, cached features + logistic regression",
    trains_network=False,
    options=("probe_c", "label_descriptions", "label_prior", "probe_views"),
    scratch_not_default="not run by default with the linear probe, which trains no network; ask for it with "
                        "--baselines raw,scratch",
    search_space=lambda: {"probe_c": {"low": 1e-4, "high": 1e2, "log": True}},
)
