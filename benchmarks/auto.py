"""Does ``fit --strategy auto`` choose well? Side by side with every single strategy, in one run.

Settings (the issue's): Fashion-MNIST with 10, 100 and 1,000 labels per class (EfficientNet-Lite0, ImageNet
weights), and two VADER sentiment domains, tweets and amazon (all-MiniLM-L6-v2). For each setting and seed the
same training examples and the same test examples go to ``linear-probe``, ``lp-ft``, ``finetune``, ``lora`` (their
default settings, with the reductions below) and to ``auto`` with a fixed time budget (``--budget``; the planner
picks the strategy and how many of the allowed epochs fit). The claim checked: auto's accuracy (mean over seeds)
is never below the median strategy's and within 1 point of the best.

Reductions for a 2-core CPU shared with other work (each stated in the JSON):
- epochs capped at ``--epochs`` (default 2) for every training strategy and for auto (the default is 10);
- Fashion-MNIST images run at ``--image-size`` pixels (default 32, near their native 28) instead of 224: about
  1/50 of the compute; every strategy sees the same inputs;
- a fixed test sample: 100 test images per class (1,000), 200 test texts per class;
- VADER: ``--text-shots`` labelled texts per class (default 100);
- ``--seeds`` (default 3); the 1,000-per-class setting can be run with fewer seeds (``--settings``/``--seeds``) and
  the JSON says how many seeds each mean has;
- when auto's choice and epochs are those of a single-strategy run of the same seed, that run *is* auto's run (the
  engine is deterministic: same config, same data, same weights); the JSON marks such rows ``reused``. Otherwise
  auto runs on its own, within its budget. Its planning time is measured either way.

Results are saved after every run (``benchmarks/results/auto.json``); an interrupted run continues where it
stopped (finished (setting, seed, strategy) entries are skipped).

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/auto.py [--settings fm10,fm100,fm1000,tweets,amazon]
      [--seeds 3] [--epochs 2] [--budget-image 300] [--budget-text 180]
"""

from __future__ import annotations

import os
import statistics
import tempfile
from pathlib import Path

from _harness import Benchmark, choose, read_json
from _tasks import fashion_task, vader_pools

BENCH = Benchmark("auto", __doc__, threads=None)
STRATEGIES = ("linear-probe", "lp-ft", "finetune", "lora")
SETTINGS = {
    "fm10": ("fashion", 10), "fm100": ("fashion", 100), "fm1000": ("fashion", 1000),
    "tweets": ("vader:tweets", None), "amazon": ("vader:amazon", None),
}


def load_setting(name: str, seed: int, text_shots: int):
    """(backbone, train, test, is_image) for one setting and seed; the test set is the same for every seed."""
    from transferkit.data.splits import sample_per_class

    source, shots = SETTINGS[name]
    if source == "fashion":
        train, test = fashion_task(shots, 100, seed, test_seed=0)
        return "efficientnet_lite0", train, test, True
    pool, held_out = vader_pools(source.split(":")[1], held_out=0.3)
    return "all-MiniLM-L6-v2", sample_per_class(pool, text_shots, seed), sample_per_class(held_out, 200, 0), False


def run_one(name: str, seed: int, strategy: str, args, work: Path, cache: Path) -> dict:
    import transferkit as tk

    backbone, train, test, is_image = load_setting(name, seed, args.text_shots)
    options = dict(backbone=backbone, test=test, seed=seed, baselines=["raw"], progress=False, device="cpu",
                   tracking_uri="off", report=False, cache_dir=str(cache), epochs=args.epochs,
                   batch_size=args.batch_size, work_dir=str(work / f"{name}-{seed}-{strategy}"))
    if is_image:
        options["image_size"] = args.image_size
    if strategy == "auto":
        options["budget"] = args.budget_image if is_image else args.budget_text
    with BENCH.step(f"fit {strategy}") as step:
        result = tk.fit(train, strategy=strategy, **options)
    seconds = step.wall_s
    row = {"setting": name, "seed": seed, "strategy": strategy, "accuracy": result.accuracy,
           "raw_accuracy": result.baselines.get("raw", {}).get("accuracy"), "seconds": round(seconds, 2),
           "n_train": len(train), "n_test": len(test), "epochs_run": result.config.get("training", {}).get(
               "training", {}).get("epochs_run")}
    if strategy == "auto":
        plan = result.config["plan"]
        row.update(chosen=result.config["strategy"], epochs=plan["epochs"], explanation=plan["explanation"],
                   planning_s=plan["planning_s"], budget_s=plan["budget_s"], within_budget=seconds <= plan["budget_s"])
    return row


def plan_only(name: str, seed: int, args, cache: Path) -> dict:
    """What auto would choose (the planner alone), to find out whether a single-strategy run is auto's run."""
    import transferkit as tk
    from transferkit.backbones import create_backbone
    from transferkit.config import make_config
    from transferkit.features.cache import FeatureCache
    from transferkit.strategies.planner import plan_strategy

    backbone_name, train, _, is_image = load_setting(name, seed, args.text_shots)
    options = dict(seed=seed, progress=False, device="cpu", epochs=args.epochs, batch_size=args.batch_size,
                   cache_dir=str(cache), strategy="auto", budget=args.budget_image if is_image else args.budget_text)
    if is_image:
        options["image_size"] = args.image_size
    config = make_config(**options)
    import torch

    torch.manual_seed(seed)
    backbone = create_backbone(backbone_name, **config.backbone_options(train.modality))
    with BENCH.step("plan") as step:
        plan = plan_strategy(train, config, backbone, budget_s=config.budget, cache=FeatureCache(cache))
    del tk
    return {"chosen": plan.strategy, "epochs": plan.epochs, "explanation": plan.explanation,
            "planning_s": round(step.wall_s, 2), "budget_s": plan.budget_s}


def summarise(rows: list[dict]) -> dict:
    table = {}
    for name in SETTINGS:
        mine = [r for r in rows if r["setting"] == name]
        if not mine:
            continue
        seeds = sorted({r["seed"] for r in mine})
        means = {}
        for strategy in (*STRATEGIES, "auto"):
            accs = [r["accuracy"] for r in mine if r["strategy"] == strategy]
            if accs:
                means[strategy] = {"mean": statistics.mean(accs), "n_seeds": len(accs)}
        singles = [means[s]["mean"] for s in STRATEGIES if s in means]
        entry = {"seeds": seeds, "means": means}
        if "auto" in means and len(singles) == len(STRATEGIES):
            best, median = max(singles), statistics.median(singles)
            entry.update(best=best, median=median, auto_minus_best=means["auto"]["mean"] - best,
                         auto_not_below_median=means["auto"]["mean"] >= median - 1e-12,
                         auto_within_1_point_of_best=means["auto"]["mean"] >= best - 0.01,
                         auto_choices=[r.get("chosen") for r in mine if r["strategy"] == "auto"])
        table[name] = entry
    return table


def print_table(table: dict, echo=print) -> None:
    header = f"{'setting':<8} " + " ".join(f"{s:>12}" for s in (*STRATEGIES, "auto")) + "  auto-best  >=median  within 1pt  auto chose"
    echo(header)
    echo("-" * len(header))
    for name, entry in table.items():
        cells = " ".join(f"{entry['means'][s]['mean']:12.4f}" if s in entry["means"] else f"{'-':>12}"
                         for s in (*STRATEGIES, "auto"))
        extra = ""
        if "auto_minus_best" in entry:
            extra = (f"  {100 * entry['auto_minus_best']:+8.1f}  {str(entry['auto_not_below_median']):>8}  "
                     f"{str(entry['auto_within_1_point_of_best']):>10}  {','.join(entry['auto_choices'])}")
        echo(f"{name:<8} {cells}{extra}   (seeds: {len(entry['seeds'])})")


def main() -> None:
    parser = BENCH.parser(seeds=3)
    parser.add_argument("--settings", default="fm10,fm100,tweets,amazon,fm1000")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--text-shots", type=int, default=100)
    parser.add_argument("--budget-image", type=float, default=300.0)
    parser.add_argument("--budget-text", type=float, default=180.0)
    parser.add_argument("--no-reuse", action="store_true", help="run auto on its own even when a single-strategy run "
                        "of the same choice exists (its time limit then applies)")
    parser.add_argument("--merge", default="", help="comma-separated result files of other runs (e.g. one setting run "
                        "on its own) whose rows join this file's, then the table is printed")
    args = BENCH.parse(parser)
    settings = choose(parser, "--settings", args.settings, tuple(SETTINGS))
    out = BENCH.output_path("auto")
    saved = BENCH.previous("auto")  # an interrupted run continues where it stopped
    rows: list[dict] = saved.get("rows", [])
    for other in [m.strip() for m in args.merge.split(",") if m.strip()]:
        if not Path(other).is_file():
            parser.error(f"--merge: {other} does not exist; give result files of this benchmark")
        extra = read_json(Path(other))
        if "rows" not in extra:
            parser.error(f"--merge: {other} holds no rows of this benchmark; give result files of auto.py")
        rows.extend(r for r in extra["rows"] if (r["setting"], r["seed"], r["strategy"]) not in
                    {(x["setting"], x["seed"], x["strategy"]) for x in rows})
        saved.setdefault("merged", []).append({"file": other, "command": extra.get("command")})
    done = {(r["setting"], r["seed"], r["strategy"]) for r in rows}
    work = Path(tempfile.mkdtemp(prefix="tk-auto-bench-"))
    cache = Path(os.environ.get("TRANSFERKIT_CACHE", Path.home() / ".cache" / "transferkit")) / "features"

    def save(echo: bool = False) -> None:
        payload = {"reductions": {"epochs": args.epochs, "image_size": args.image_size, "text_shots": args.text_shots,
                                  "test": "100 images / 200 texts per class, the same for every seed",
                                  "budgets_s": {"image": args.budget_image, "text": args.budget_text},
                                  "batch_size": args.batch_size},
                   "merged": saved.get("merged", []), "rows": rows, "table": summarise(rows)}
        BENCH.save("auto", payload, echo=echo)

    for name in settings:
        for seed in range(args.seeds):
            plan = None
            for strategy in STRATEGIES:
                if (name, seed, strategy) in done:
                    continue
                row = run_one(name, seed, strategy, args, work, cache)
                rows.append(row)
                save()
                print(f"{name} seed {seed} {strategy:<12} accuracy {row['accuracy']:.4f}  ({row['seconds']:.0f} s)",
                      flush=True)
            if (name, seed, "auto") in done:
                continue
            plan = plan_only(name, seed, args, cache)
            same = next((r for r in rows if r["setting"] == name and r["seed"] == seed and r["strategy"] == plan["chosen"]
                         and (plan["epochs"] is None or plan["epochs"] == args.epochs)), None)
            if same is not None and not args.no_reuse:
                row = {**same, "strategy": "auto", "reused": True, **plan,
                       "seconds": round(same["seconds"] + plan["planning_s"], 2)}
                row["within_budget"] = row["seconds"] <= plan["budget_s"]
            else:
                row = {**run_one(name, seed, "auto", args, work, cache), "reused": False}
            rows.append(row)
            save()
            print(f"{name} seed {seed} auto -> {row['chosen']:<12} accuracy {row['accuracy']:.4f}  "
                  f"({row['seconds']:.0f} s, budget {row['budget_s']:.0f} s{', reused run' if row['reused'] else ''})",
                  flush=True)
    save(echo=True)
    print(f"\nthreads: {args.threads}; epochs <= {args.epochs}; image size {args.image_size}; results: {out}")
    print_table(summarise(rows))


if __name__ == "__main__":
    main()
