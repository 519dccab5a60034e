"""What ranking costs, side by side in one run: feature extraction alone, ranking, and one epoch of fine-tuning.

For each task (Fashion-MNIST, 300 labelled images; VADER movies, 400 labelled snippets) and all its candidates:

1. extraction alone: build each backbone and extract its pooled features of the labelled data, without a cache
   (the ratio's denominator) and, for reference, into an empty feature cache (as ``fit`` does);
2. ranking, cold: ``rank`` with an empty cache (build, features + source logits in one pass, all five scores,
   the raw-input row), and warm: the same ranking again, served from the cache;
3. fine-tuning every candidate for one epoch on the same data: the engine's ``fit(strategy="finetune",
   epochs=1)`` when this installation has it (its defaults: 15 % of the data held out for validation, light
   augmentation, fp32 on the CPU; plus evaluation on 2 test images per class; no tracking); otherwise a plain full fine-tune in a bare PyTorch loop (the
   backbone and a linear head, AdamW, cross-entropy, batch 32, every parameter trainable, same preprocessing).

Steps 1 and 2 run ``--repeats`` times (default 3), alternating, and the fastest of each is reported (the machine
is shared; extraction into a cache and the warm ranking run once). Targets:
ranking < 1.2x extraction alone; ranking >= 20x cheaper than fine-tuning every candidate for one epoch.

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/rank_cost.py [--quick] [--repeats N]
Saves benchmarks/results/rank_cost.json.
"""

from __future__ import annotations

import gc
import tempfile

from _harness import Benchmark
from _tasks import IMAGE_CANDIDATES, TEXT_CANDIDATES, fashion_task, vader_task

BENCH = Benchmark("rank_cost", __doc__, threads=2)
RANK_OVER_EXTRACTION_MAX = 1.2
FINETUNE_OVER_RANK_MIN = 20.0


def _build(name: str, modality: str, seed: int = 0):
    import torch

    from transferkit.backbones import create_backbone

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return create_backbone(name, **({"max_length": 256} if modality == "text" else {}))


def extraction_alone(train, candidates: list[str], batch_size: int, cache_dir: str | None = None) -> dict[str, float]:
    """Build each backbone and extract its features: without a cache, or through an empty one (as ``fit`` does)."""
    from transferkit.features.cache import FeatureCache
    from transferkit.features.extract import extract_features

    cache = FeatureCache(cache_dir) if cache_dir is not None else None
    seconds = {}
    for name in candidates:
        with BENCH.step("extraction alone" if cache is None else "extraction into an empty cache") as step:
            backbone = _build(name, train.modality)
            extract_features(backbone, train, cache=cache, batch_size=batch_size, progress=False)
        seconds[name] = step.wall_s
        del backbone
        gc.collect()
    return seconds


def ranking(train, candidates: list[str], batch_size: int, cache_dir: str) -> tuple[float, object]:
    from transferkit.workflows.rank import rank

    with BENCH.step("ranking") as step:
        result = rank(train, candidates, cache_dir=cache_dir, batch_size=batch_size, progress=False)
    return step.wall_s, result


def plain_finetune_epoch(name: str, train, batch_size: int = 32, seed: int = 0) -> float:
    """One epoch of full fine-tuning (backbone + linear head, every parameter trained) in a bare PyTorch loop."""
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, Dataset

    with BENCH.step("fine-tune 1 epoch (plain loop)") as step:
        backbone = _build(name, train.modality, seed)
        classes = train.classes
        labels = train.label_array(classes)

        class Labelled(Dataset):
            def __len__(self) -> int:
                return len(train)

            def __getitem__(self, i: int):
                return backbone.prepare(train.items[i]), int(labels[i])

        def collate(items):
            return backbone.collate([x for x, _ in items]), torch.tensor([y for _, y in items])

        generator = torch.Generator().manual_seed(seed)
        loader = DataLoader(Labelled(), batch_size=batch_size, shuffle=True, collate_fn=collate, generator=generator)
        head = nn.Linear(backbone.num_features, len(classes))
        if train.modality == "image":
            backbone.to(memory_format=torch.channels_last)
        parameters = [p for p in backbone.parameters() if p.requires_grad] + list(head.parameters())
        optimizer = torch.optim.AdamW(parameters, lr=1e-4, weight_decay=0.01)
        backbone.train()
        for batch, target in loader:
            optimizer.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(head(backbone.forward_features(batch)), target)
            loss.backward()
            optimizer.step()
    del backbone, optimizer
    gc.collect()
    return step.wall_s


def engine_finetune_epoch(name: str, train, test) -> float:
    from transferkit.api import fit

    with BENCH.step("fine-tune 1 epoch (engine)") as step:
        fit(train, test=test, backbone=name, strategy="finetune", epochs=1, baselines=[], no_cache=True,
            progress=False, tracking_uri="off")
    return step.wall_s


def run_task(task: str, train, test, candidates: list[str], batch_size: int, finetune_reason: str | None,
             repeats: int) -> dict:
    print(f"== {task}: {len(train)} labelled {train.modality} examples, candidates: {', '.join(candidates)}")
    extraction_runs, cached_runs, rank_runs, warm = [], [], [], None
    for repeat in range(repeats):
        extraction_runs.append(extraction_alone(train, candidates, batch_size))
        if repeat == 0:
            with tempfile.TemporaryDirectory(prefix="tk-extract-cost-") as cache_dir:
                cached_runs.append(extraction_alone(train, candidates, batch_size, cache_dir))
        with tempfile.TemporaryDirectory(prefix="tk-rank-cost-") as cache_dir:
            cold, result = ranking(train, candidates, batch_size, cache_dir)
            rank_runs.append({"total": cold, "rows": {r.name: dict(r.seconds) for r in result.rows}})
            if repeat == 0:
                warm, _ = ranking(train, candidates, batch_size, cache_dir)
        cached = f", {sum(cached_runs[-1].values()):.1f} s (into an empty cache)" if repeat == 0 else ""
        print(f"   repeat {repeat + 1}: extraction alone {sum(extraction_runs[-1].values()):.1f} s (no cache){cached}; "
              f"ranking (empty cache) {cold:.1f} s")
    extraction = min(sum(run.values()) for run in extraction_runs)
    extraction_cached = min(sum(run.values()) for run in cached_runs)
    best_rank = min(rank_runs, key=lambda r: r["total"])
    finetune: dict[str, float] = {}
    method = "engine: fit(strategy='finetune', epochs=1)" if finetune_reason is None else \
        "plain PyTorch loop: full fine-tune, 1 epoch, batch 32, AdamW (the engine's finetune is not in this build)"
    failures: dict[str, str] = {}
    for name in candidates:
        how = "engine"
        if finetune_reason is None:
            try:
                finetune[name] = engine_finetune_epoch(name, train, test)
            except Exception as exc:  # the engine of this checkout failed: time the plain loop instead, and say so
                failures[name] = f"{type(exc).__name__}: {exc}"
                how = "plain loop (the engine failed: " + failures[name][:120] + ")"
                finetune[name] = plain_finetune_epoch(name, train)
        else:
            how = "plain loop"
            finetune[name] = plain_finetune_epoch(name, train)
        print(f"   fine-tune 1 epoch {name}: {finetune[name]:.1f} s [{how}]")
    if failures:
        method += f"; the engine failed for {', '.join(failures)}, timed with the plain PyTorch loop instead"
    finetune_total = sum(finetune.values())
    ratio_rank = best_rank["total"] / extraction
    ratio_ft = finetune_total / best_rank["total"]
    print(f"   extraction alone {extraction:.1f} s | ranking {best_rank['total']:.1f} s (x{ratio_rank:.2f}) | "
          f"warm ranking {warm:.2f} s | fine-tune all, 1 epoch {finetune_total:.1f} s "
          f"(x{ratio_ft:.1f} the ranking)\n")
    return {
        "task": task, "n_examples": len(train), "candidates": candidates,
        "extraction_alone_s": {"best_total": extraction, "runs": extraction_runs},
        "extraction_into_empty_cache_s": {"best_total": extraction_cached, "runs": cached_runs},
        "ranking_over_extraction_into_cache": best_rank["total"] / extraction_cached,
        "ranking_cold_s": {"best_total": best_rank["total"], "runs": rank_runs},
        "ranking_warm_s": warm,
        "finetune_one_epoch_s": {"method": method, "per_candidate": finetune, "total": finetune_total,
                                 "engine_failures": failures},
        "ranking_over_extraction": ratio_rank,
        "finetune_over_ranking": ratio_ft,
        "targets_met": {f"ranking < {RANK_OVER_EXTRACTION_MAX}x extraction": ratio_rank < RANK_OVER_EXTRACTION_MAX,
                        f"fine-tune >= {FINETUNE_OVER_RANK_MIN}x ranking": ratio_ft >= FINETUNE_OVER_RANK_MIN},
    }


def main() -> None:
    parser = BENCH.parser(quick="fewer examples (a smoke run; figures not comparable)")
    parser.add_argument("--batch-size", type=int, default=64, help="extraction batch size (default 64)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats of extraction and ranking")
    args = BENCH.parse(parser)
    from transferkit.selection.ranking import finetune_unavailable_reason

    finetune_reason = finetune_unavailable_reason()
    print(f"threads: {args.threads}; device: cpu; fine-tune timing: "
          f"{'engine' if finetune_reason is None else 'plain PyTorch loop (' + finetune_reason + ')'}\n")
    scale = 0.1 if args.quick else 1.0
    fashion_train, fashion_test = fashion_task(shots=max(3, int(30 * scale)), n_test_per_class=2)
    movies_train, movies_test = vader_task("movies", max(10, int(200 * scale)), 5)
    results = []
    name = "rank_cost" + ("_quick" if args.quick else "")
    for task, train, test, candidates in [("fashion-mnist", fashion_train, fashion_test, IMAGE_CANDIDATES),
                                          ("vader-movies", movies_train, movies_test, TEXT_CANDIDATES)]:
        results.append(run_task(task, train, test, candidates, args.batch_size, finetune_reason, args.repeats))
        BENCH.save(name, {"partial": True, "tasks": results}, echo=False)
    print(f"{'task':<15} {'extract s':>10} {'(into cache)':>13} {'rank s':>8} {'rank/extract':>13} "
          f"{'warm rank s':>12} {'fine-tune s':>12} {'fine-tune/rank':>15}")
    for r in results:
        print(f"{r['task']:<15} {r['extraction_alone_s']['best_total']:>10.1f} "
              f"{r['extraction_into_empty_cache_s']['best_total']:>13.1f} {r['ranking_cold_s']['best_total']:>8.1f} "
              f"{r['ranking_over_extraction']:>13.2f} {r['ranking_warm_s']:>12.2f} "
              f"{r['finetune_one_epoch_s']['total']:>12.1f} {r['finetune_over_ranking']:>15.1f}")
    BENCH.save(name, {
        "finetune_method": results[0]["finetune_one_epoch_s"]["method"],
        "targets": {"ranking_over_extraction_max": RANK_OVER_EXTRACTION_MAX,
                    "finetune_over_ranking_min": FINETUNE_OVER_RANK_MIN},
        "tasks": results})


if __name__ == "__main__":
    main()
