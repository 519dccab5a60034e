"""Shared by the domain-adaptation benchmarks (adapt_text.py, adapt_digits.py): a seed's record, aggregation over
seeds, printing."""

from __future__ import annotations

from typing import Any

import numpy as np


def per_method(report: dict[str, Any], validator: str) -> dict[str, dict[str, Any]]:
    """For each method: the candidate (trade-off) the validator prefers and its target accuracy, plus the best
    trade-off in hindsight."""
    out: dict[str, dict[str, Any]] = {}
    for row in report["candidates"]:
        entry = out.setdefault(row["method"], {"rows": []})
        entry["rows"].append(row)
    for method, entry in out.items():
        rows = entry.pop("rows")
        pick = max(rows, key=lambda r: r["scores"][validator])
        best = max(rows, key=lambda r: r["target_accuracy"])
        entry.update(choice=pick["name"], accuracy=pick["target_accuracy"], best=best["name"],
                     best_accuracy=best["target_accuracy"], proxy_a_distance=pick["proxy_a_distance"])
    return out


def summarise(runs: list[dict[str, Any]], validators: list[str]) -> dict[str, Any]:
    """Mean and spread over seeds of every method's target accuracy (trade-off chosen by the validator) and of the
    label-free choice of each validator."""
    methods = sorted({m for run in runs for m in run["per_method"]}, key=lambda m: runs[0]["order"].index(m))
    table = {}
    for method in methods:
        values = [run["per_method"][method]["accuracy"] for run in runs]
        hindsight = [run["per_method"][method]["best_accuracy"] for run in runs]
        table[method] = {"mean": float(np.mean(values)), "std": float(np.std(values)), "values": values,
                         "best_tradeoff_mean": float(np.mean(hindsight))}
    choices = {}
    for validator in validators:
        values = [run["choice_by_validator"][validator]["target_accuracy"] for run in runs]
        choices[validator] = {"mean": float(np.mean(values)), "std": float(np.std(values)), "values": values,
                              "choices": [run["choice_by_validator"][validator]["choice"] for run in runs]}
    oracle = [run["best_accuracy"] for run in runs]
    return {"methods": table, "label_free_choice": choices,
            "best_in_hindsight": {"mean": float(np.mean(oracle)), "values": oracle}}


def print_table(title: str, summary: dict[str, Any], reference: dict[str, float], validator: str) -> None:
    print(f"\n{title}")
    print(f"{'method':<16} {'target acc (mean +- sd)':>24}  {'best trade-off':>14}")
    for method, row in summary["methods"].items():
        print(f"{method:<16} {row['mean']:>15.4f} +- {row['std']:.4f}  {row['best_tradeoff_mean']:>14.4f}")
    for name, row in summary["label_free_choice"].items():
        mark = "  (default validator)" if name == validator else ""
        print(f"{'choice: ' + name:<16} {row['mean']:>15.4f} +- {row['std']:.4f}  {', '.join(row['choices'])}{mark}")
    print(f"{'best in hindsight':<16} {summary['best_in_hindsight']['mean']:>15.4f}")
    for name, value in reference.items():
        print(f"{name:<16} {value:>15.4f}")


def run_record(report: dict[str, Any], validator: str, seconds: float) -> dict[str, Any]:
    labels = report["target_labels"]
    return {"per_method": per_method(report, validator), "choice_by_validator": labels["choice_by_validator"],
            "best": labels["best"], "best_accuracy": labels["best_accuracy"],
            "source_only_accuracy": labels["source_only_accuracy"],
            "order": list(dict.fromkeys(r["method"] for r in report["candidates"])),
            "domain_gap": report["domain_gap"], "candidates": report["candidates"], "seconds": round(seconds, 1)}
