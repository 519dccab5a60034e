"""Cold-start recommendation on MovieLens-100k: popularity, id-only (ALS), content-only and hybrid, on warm and cold
films, over several seeds, in one run.

Data: MovieLens-100k (GroupLens, University of Minnesota: 100,000 ratings 1-5 by 943 users of 1,682 films,
1997-1998), as the RecBole wheel ships it (``recbole/dataset_example/ml-100k/ml-100k.inter`` and ``.item``: film
title, release year, genres). ``make recommend-data`` downloads the wheel (``pip download --no-deps
recbole==1.2.1``) into ``~/.cache/transferkit/data``; the two files are read out of it here, never copied into the
repository, and RecBole itself is not installed. MovieLens' terms: research use, no redistribution, cite F. M.
Harper and J. A. Konstan, "The MovieLens Datasets: History and Context", ACM TiiS 5(4), 2015.

Setting: every rating counts as a positive (implicit feedback). Item content: "TITLE (YEAR). GENRE, GENRE" through
the packaged all-MiniLM-L6-v2 (frozen, through the feature cache). Per seed: 20 % of the films with ratings held out
of training entirely (cold films); each user's latest 20 % of the other ratings held out (time-aware). The models
and the three views (warm: among films with history; cold: among the cold films; all: the whole catalogue) are
those of ``transferkit recommend fit`` (see :mod:`transferkit.recommendation.evaluation`); the intervals are paired
bootstraps over users (95 %).

Run:  OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/recommend_coldstart.py [--seeds 0,1,2]
"""

from __future__ import annotations

import csv
import statistics
import zipfile
from pathlib import Path

from _harness import Benchmark

DATA_DIR = Path.home() / ".cache" / "transferkit" / "data"
MEMBER = "recbole/dataset_example/ml-100k/ml-100k.{}"


def find_wheel(folder: Path) -> Path:
    wheels = sorted(folder.glob("recbole-*.whl"))
    if not wheels:
        raise SystemExit(f"no RecBole wheel in {folder}; run `make recommend-data` (it downloads the wheel, "
                         "about 2 MB, without installing it).")
    return wheels[-1]


def write_tables(wheel: Path, work: Path) -> tuple[Path, Path]:
    """ratings.tsv (user, item, rating, timestamp) and films.tsv (item, text) from the wheel's two files."""
    work.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        inter = archive.read(MEMBER.format("inter")).decode("utf-8").splitlines()
        item = archive.read(MEMBER.format("item")).decode("latin-1").splitlines()
    ratings, films = work / "ratings.tsv", work / "films.tsv"
    with open(ratings, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["user", "item", "rating", "timestamp"])
        writer.writerows(line.split("\t") for line in inter[1:] if line.strip())
    with open(films, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["item", "text"])
        for line in item[1:]:
            if not line.strip():
                continue
            item_id, title, year, genres = (line.split("\t") + ["", "", ""])[:4]
            text = f"{title} ({year})" if year.strip() else title
            writer.writerow([item_id, f"{text}. {', '.join(genres.split())}" if genres.strip() else text])
    return ratings, films


def main() -> None:
    bench = Benchmark("recommend_coldstart", __doc__, threads=1)
    parser = bench.parser(seeds="0,1,2")
    parser.add_argument("--data", type=Path, default=DATA_DIR, help="folder holding the RecBole wheel")
    parser.add_argument("--work", default="/tmp/tk-recommend-bench", help="folder for the tables read from the wheel")
    parser.add_argument("--backbone", default="all-MiniLM-L6-v2")
    args = bench.parse(parser)

    import numpy as np

    from transferkit.data.interactions import load_catalogue, load_interactions
    from transferkit.recommendation.config import make_recommend_config
    from transferkit.recommendation.evaluation import evaluate_recommender, split_interactions
    from transferkit.recommendation.training import build_recommender
    from transferkit.workflows.steps import build_backbone, feature_cache

    ratings, films = write_tables(find_wheel(args.data), Path(args.work))
    config = make_recommend_config(items=str(films), backbone=args.backbone, progress=False)
    with bench.step("read"):
        catalogue = load_catalogue(films, config)
        data = load_interactions(ratings, catalogue.item_ids, catalogue.origin, config)
    with bench.step("features"):
        from transferkit.features.extract import extract_features

        backbone = build_backbone(args.backbone, config, catalogue.content)
        features = np.asarray(extract_features(backbone, catalogue.content, cache=feature_cache(config),
                                               batch_size=64, progress=False), dtype=np.float32)
    spec = {"name": args.backbone, "options": config.backbone_options("text")}
    runs = []
    for seed in args.seeds:
        seeded = config.model_copy(update={"seed": seed})
        with bench.step("train"):
            split = split_interactions(data, len(catalogue.item_ids), seeded, seed)
            model = build_recommender(data, split.train, catalogue.item_ids, features, spec, "text", seeded)
        with bench.step("evaluate"):
            evaluation = evaluate_recommender(model, data, split, seeded.k, seed=seed)
        print(f"\nseed {seed}: {evaluation.facts}\n{evaluation.table()}")
        for sentence in evaluation.sentences():
            print("  " + sentence)
        runs.append({"seed": seed, **evaluation.to_dict()})
    summary = summarise(runs)
    print("\nmean over seeds:")
    for line in summary["lines"]:
        print("  " + line)
    bench.save("recommend_coldstart", {"data": "MovieLens-100k (RecBole 1.2.1 wheel)", "backbone": args.backbone,
                                       "cold_items": config.cold_items, "test_fraction": config.test_fraction,
                                       "k": config.k, "summary": summary, "runs": runs})


def summarise(runs: list[dict]) -> dict:
    """Mean figures per view and scorer over seeds, the targets and whether each seed met them."""
    means: dict = {}
    for view in runs[0]["views"]:
        for scorer in runs[0]["views"][view]:
            for metric in ("recall", "ndcg", "coverage", "cold_share"):
                values = [r["views"][view][scorer][metric] for r in runs]
                if None not in values:
                    means[f"{view}.{scorer}.{metric}"] = statistics.mean(values)

    def comparison(run: dict, view: str, model: str, metric: str) -> dict:
        return next(c for c in run["comparisons"] if (c["view"], c["model"], c["metric"]) == (view, model, metric))

    cold = [comparison(r, "cold", "hybrid", "recall") for r in runs]
    warm_gap = [r["views"]["warm"]["hybrid"]["recall"] - r["views"]["warm"]["id"]["recall"] for r in runs]
    ratio = [r["views"]["all"]["hybrid"]["coverage"] / max(r["views"]["all"]["id"]["coverage"], 1e-12) for r in runs]
    targets = {
        "cold: hybrid beats popularity, interval above 0 (recall@10), seeds": [c["ci_low"] > 0 for c in cold],
        "warm: hybrid within 1 point of id-only or better (recall@10), seeds": [g >= -0.01 for g in warm_gap],
        "all: hybrid coverage >= 2x id-only, seeds": [x >= 2 for x in ratio],
    }
    lines = [f"{key}: {value:.4f}" for key, value in means.items()]
    lines += [f"cold hybrid - popularity recall@10, seed {r['seed']}: {100 * c['difference']:+.1f} points "
              f"({100 * c['ci_low']:+.1f} to {100 * c['ci_high']:+.1f})" for r, c in zip(runs, cold)]
    lines += [f"coverage ratio hybrid / id-only (all view): {', '.join(f'{x:.2f}' for x in ratio)}"]
    lines += [f"target {name}: {flags}" for name, flags in targets.items()]
    return {"means": means, "coverage_ratio": ratio, "warm_gap": warm_gap, "targets": targets, "lines": lines}


if __name__ == "__main__":
    main()
