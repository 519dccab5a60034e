"""Do the transferability scores order candidate backbones as their measured accuracy does?

On Fashion-MNIST (300 labelled images) and two VADER sentiment domains (400 labelled snippets each), every
candidate is ranked by LogME, LEEP, NCE, H-score, the shrinkage H-score and, for comparison, LogME exactly as
published (no intercept; transferkit's LogME adds a flat-prior intercept), then its held-out accuracy is
measured (linear probe on the frozen features; a one-epoch fine-tune when the training engine provides the
finetune strategy), and each score is compared with each accuracy by the weighted Kendall tau. The random-weight
controls must rank last; target: LogME tau >= 0.6 against the linear-probe accuracy on every task.

Run:  OMP_NUM_THREADS=2 .venv/bin/python benchmarks/rank_transferability.py [--quick]
Saves benchmarks/results/rank_transferability.json.
"""

from __future__ import annotations

import tempfile

from _harness import Benchmark
from _tasks import IMAGE_CANDIDATES, TEXT_CANDIDATES, fashion_task, vader_task

TARGET_TAU = 0.6


def random_rank_last(ranking, score: str) -> dict:
    """Whether every random-weight candidate is below every other row (raw input included) by ``score``."""
    rows = [r for r in ranking.rows if score in r.scores]
    rows.sort(key=lambda r: -r.scores[score])
    randoms = [i for i, r in enumerate(rows) if r.name.startswith("random:")]
    others = [i for i, r in enumerate(rows) if not r.name.startswith("random:")]
    last = bool(randoms) and (not others or min(randoms) > max(others))
    return {"random_last": last, "order": [r.name for r in rows]}


def main() -> None:
    bench = Benchmark("rank_transferability", __doc__, threads=2)
    args = bench.parse(bench.parser(quick="fewer examples (a smoke run; figures not comparable)"))
    from transferkit.selection.config import DEFAULT_SCORES
    from transferkit.selection.ranking import finetune_unavailable_reason
    from transferkit.workflows.rank import rank

    scale = 0.2 if args.quick else 1.0
    tasks = [
        ("fashion-mnist", IMAGE_CANDIDATES, lambda: fashion_task(shots=max(3, int(30 * scale)),
                                                                 n_test_per_class=max(5, int(50 * scale)))),
        ("vader-movies", TEXT_CANDIDATES, lambda: vader_task("movies", max(10, int(200 * scale)),
                                                             max(10, int(200 * scale)))),
        ("vader-amazon", TEXT_CANDIDATES, lambda: vader_task("amazon", max(10, int(200 * scale)),
                                                             max(10, int(200 * scale)))),
    ]
    finetune_reason = finetune_unavailable_reason()
    print(f"threads: {args.threads}; fine-tune accuracy: "
          f"{'engine finetune, 1 epoch' if finetune_reason is None else 'not run - ' + finetune_reason}\n")
    results = []
    with tempfile.TemporaryDirectory(prefix="tk-rank-bench-") as cache_dir:
        for task, candidates, load in tasks:
            train, test = load()
            with bench.step("ranking and validation") as step:
                ranking = rank(train, candidates, test=test, validate=True, cache_dir=cache_dir, progress=False,
                               scores=[*DEFAULT_SCORES, "logme_no_intercept"])
            seconds = step.wall_s
            print(f"== {task}: {len(train)} labelled, {len(test)} held out, {seconds:.0f} s")
            print(ranking.table() + "\n")
            checks = {score: random_rank_last(ranking, score) for score in ranking.scores}
            tau = ranking.correlations["logme"]["linear_probe"]["weighted_tau"]
            results.append({
                "task": task, "n_train": len(train), "n_test": len(test), "seconds": round(seconds, 1),
                "ranking": ranking.to_dict(), "random_rank_last": checks,
                "logme_tau_linear_probe": tau, "logme_target_met": tau is not None and tau >= TARGET_TAU,
            })
    print("summary: weighted Kendall tau of each score against linear-probe accuracy (fine-tune in brackets)")
    scores = results[0]["ranking"]["scores"]
    print(f"{'task':<15}" + "".join(f"{s:>20}" for s in scores) + "   random last by LogME")
    for r in results:
        cells = []
        for s in scores:
            c = r["ranking"]["correlations"][s]
            lp, ft = c["linear_probe"]["weighted_tau"], c.get("finetune", {}).get("weighted_tau")
            cell = "n/a" if lp is None else f"{lp:+.2f}"
            cell += "" if ft is None else f" ({ft:+.2f})"
            cells.append(f"{cell:>20}")
        print(f"{r['task']:<15}" + "".join(cells) + f"   {r['random_rank_last']['logme']['random_last']}")
    met = all(r["logme_target_met"] for r in results)
    print(f"\nLogME tau >= {TARGET_TAU} on every task: {met}")
    bench.save("rank_transferability" + ("_quick" if args.quick else ""), {
        "finetune": "engine finetune, 1 epoch" if finetune_reason is None else f"not run: {finetune_reason}",
        "target": f"LogME weighted tau >= {TARGET_TAU} against linear-probe accuracy on every task",
        "target_met": met, "tasks": results})


if __name__ == "__main__":
    main()
