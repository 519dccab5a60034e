"""What ``explore`` returns: one row per example (the columns of ``explore.csv``), a summary per cluster and the
facts of how each figure was computed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: The columns of ``explore.csv`` / ``explore.parquet``, in order.
COLUMNS = ("split", "row_id", "label", "cluster", "map_x", "map_y", "duplicate_group", "duplicate_kind",
           "outlier_score", "outlier", "label_issue_score", "label_issue", "suggested_label",
           "suggested_probability")


@dataclass
class ExploreResult:
    """``table``: column -> one value per example (:data:`COLUMNS`). ``clusters``: per cluster its ``id``,
    ``size``, ``labels`` (label -> count), ``central`` (row ids nearest its centre), ``examples`` (what the
    modality shows of them) and ``terms`` (distinctive terms, for text). ``facts``: the backbone, the methods and
    their settings, counts, seconds. ``files``: what was written."""

    table: dict[str, list[Any]]
    clusters: list[dict[str, Any]]
    facts: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.table["row_id"])

    def column(self, name: str) -> np.ndarray:
        return np.asarray(self.table[name])

    def ranked(self, score: str, flag: str | None = None, top: int | None = None) -> list[str]:
        """Row ids by ``score`` (``outlier_score``, ``label_issue_score``), highest first; only flagged rows when
        ``flag`` names the flag column; examples without a score left out."""
        values = [(-float(s), i) for i, s in enumerate(self.table[score]) if s is not None and s == s
                  and (flag is None or self.table[flag][i])]
        return [self.table["row_id"][i] for _, i in sorted(values)][:top]

    def summary(self) -> str:
        """A few lines for the terminal: what was found and where it was written."""
        f = self.facts
        lines = [f"explore: {f['examples']:,} examples ({', '.join(f'{s}: {n:,}' for s, n in f['splits'].items())}), "
                 f"backbone {f['backbone']}, {f['seconds']:.1f} s",
                 f"clusters: {f['cluster_count']} ({f['cluster_method']})",
                 f"map: {f['map_method']}",
                 f"duplicates: {f['exact_duplicates']:,} examples with an exact copy, {f['near_duplicates']:,} with a "
                 f"near-duplicate; {f['cross_split_groups']:,} groups span splits",
                 f"outliers: {f['outliers']:,} flagged (score above {f['outlier_threshold']:.3f})"]
        if f.get("label_method"):
            lines.append(f"label issues: {f['label_issues']:,} flagged of {f['labelled']:,} labelled "
                         f"({f['label_method']})")
            top = self.ranked("label_issue_score", "label_issue", 5)
            if top:
                lines.append("  most likely wrong: " + "; ".join(top))
        if f.get("suggested"):
            lines.append(f"suggested labels: {f['suggested']:,} unlabelled examples")
        lines += [f"{name}: {path}" for name, path in self.files.items()]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The facts, the clusters (without their thumbnails) and the files, JSON-ready (``summary.json``)."""
        clusters = [{k: v for k, v in c.items() if k != "examples"} for c in self.clusters]
        return {"facts": self.facts, "clusters": clusters, "files": self.files}
