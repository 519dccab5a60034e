"""The built-in demo: few labels per class, a pretrained backbone against the raw-input and from-scratch baselines,
three tasks.

1. Fashion-MNIST (clothing photos, 10 classes) with EfficientNet-Lite0: transfer should help.
2. VADER movie-review snippets (sentiment) with all-MiniLM-L6-v2: transfer should help a lot.
3. scikit-learn's 8x8 digits with EfficientNet-Lite0: ImageNet features do *not* beat raw pixels here; the verdict
   must say so rather than claim success.

With ``audio=True`` (``transferkit demo --audio``) the task is sound instead: drum hits (kick, snare, tom, hi-hat,
crash, ride) of Debian's Hydrogen drum kits with the packaged aiSFX network, the test set whole kits the model never
heard, against log-mel statistics and the network trained from scratch. With 20 clips per class the probe is ahead
of log-mel; with every clip of the training kits log-mel catches up (benchmarks/audio_transfer.py): the verdict
says which, on this split.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from transferkit._io import atomic_write_json, atomic_write_text
from transferkit.errors import DataNotFoundError

#: Training budget of the demo's from-scratch baseline (epochs; 2 with --quick).
SCRATCH_EPOCHS = 5


def _audio_tasks(quick: bool) -> list[tuple[str, str, Callable]]:
    """The drum-kit task: training kits and held-out kits (every other test clip with ``quick``)."""
    from transferkit.data.drumkits import load_drumkit_split

    def drums():
        train, test, _ = load_drumkit_split(seed=0)
        return train, test.subset(range(0, len(test), 3 if quick else 1))

    return [("drum-kits", "aisfx", drums)]


def _tasks(quick: bool, audio: bool = False) -> list[tuple[str, str, Callable]]:
    from transferkit.data.builtin import load_digits, load_fashion_mnist, load_vader
    from transferkit.data.splits import stratified_split

    if audio:
        return _audio_tasks(quick)
    n_test = 300 if quick else 1000

    def fashion():
        test = load_fashion_mnist("test")
        return load_fashion_mnist("train"), test.subset(range(0, len(test), len(test) // n_test)[:n_test])

    def movies():
        train, test = stratified_split(load_vader("movies"), 0.5, seed=0, names=("train", "test"))
        return train, test.subset(range(0, len(test), len(test) // n_test)[:n_test])

    def digits():
        train, test = stratified_split(load_digits(), 0.5, seed=0, names=("train", "test"))
        n = min(n_test // 2, len(test))
        return train, test.subset(range(0, len(test), len(test) // n)[:n])

    return [
        ("fashion-mnist", "efficientnet_lite0", fashion),
        ("vader-movies", "all-MiniLM-L6-v2", movies),
        ("sklearn-digits", "efficientnet_lite0", digits),
    ]


def run_demo(output: Path, shots: int = 20, quick: bool = False, echo: Callable[[str], None] = print,
             audio: bool = False) -> list[dict]:
    """Run the three tasks (the drum-kit task with ``audio``), print a table, save each model under ``output``
    with a summary (text and JSON)."""
    from transferkit.workflows.fit import fit

    output = Path(output)
    rows = []
    missing: DataNotFoundError | None = None
    raw = "log-mel statistics" if audio else "pixels or TF-IDF"
    echo(f"transferkit demo: {shots} labelled examples per class; each model is compared with logistic regression "
         f"on the raw input ({raw}) and with the same network trained from random weights, on the same "
         "held-out examples.\n")
    for task, backbone, load in _tasks(quick, audio):
        try:
            train, test = load()
        except DataNotFoundError as exc:
            echo(f"[{task}] skipped: {exc}")
            missing = exc
            continue
        start = time.perf_counter()
        # The from-scratch baseline always runs here: the same architecture from random weights, trained for
        # SCRATCH_EPOCHS, answers "would this network have learnt the task without the pretraining?".
        result = fit(train, test=test, backbone=backbone, shots=shots, output=str(output / task), overwrite=True,
                     seed=0, baselines=["raw", "scratch"], epochs=2 if quick else SCRATCH_EPOCHS, batch_size=32,
                     progress=False)
        seconds = time.perf_counter() - start
        echo(f"[{task}] {backbone}, {len(test)} test examples, {seconds:.0f} s\n{result.summary()}\n")
        rows.append(_row(task, backbone, shots, len(test), result, seconds))
    if not rows and missing is not None:
        raise missing
    table = format_table(rows)
    echo(table)
    atomic_write_text(output / "summary.txt", table + "\n")
    atomic_write_json(output / "summary.json", rows)
    echo(f"\nmodels and summary saved in {output}/")
    return rows


def _row(task: str, backbone: str, shots: int, n_test: int, result: Any, seconds: float) -> dict:
    """One task's line of the summary: the transferred model against the raw-input and from-scratch baselines."""
    comparison = result.comparisons[0]
    scratch = next((c for c in result.comparisons if c.baseline == "scratch"), None)
    return {"task": task, "backbone": backbone, "shots": shots, "n_test": n_test,
            "transfer_accuracy": result.accuracy, "raw_accuracy": comparison.baseline_accuracy,
            "difference": comparison.difference, "ci_low": comparison.ci_low, "ci_high": comparison.ci_high,
            "verdict": comparison.verdict, "seconds": round(seconds, 1),
            "scratch_accuracy": scratch.baseline_accuracy if scratch else None,
            "verdict_vs_scratch": scratch.verdict if scratch else "not run"}


def format_table(rows: list[dict]) -> str:
    """The demo's summary table, one line per task."""
    header = (f"{'task':<16} {'backbone':<20} {'shots':>5} {'transfer':>8} {'raw':>6} {'diff (95% CI)':>22}  "
              f"{'verdict':<25} {'scratch':>7}  vs scratch")
    lines = [header, "-" * len(header)]
    for r in rows:
        ci = f"{100 * r['difference']:+.1f} ({100 * r['ci_low']:+.1f}, {100 * r['ci_high']:+.1f})"
        scratch = f"{r['scratch_accuracy']:>7.3f}" if r.get("scratch_accuracy") is not None else f"{'-':>7}"
        lines.append(f"{r['task']:<16} {r['backbone']:<20} {r['shots']:>5} {r['transfer_accuracy']:>8.3f} "
                     f"{r['raw_accuracy']:>6.3f} {ci:>22}  {r['verdict']:<25} {scratch}  "
                     f"{r.get('verdict_vs_scratch', 'not run')}")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(run_demo(Path("demo-output")), indent=2))
