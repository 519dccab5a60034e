"""Time per training step: the engine (Lightning Trainer + transferkit's module, callbacks and logs) against a bare
PyTorch loop on the same model, batch, data loader, optimiser groups, schedule and loss, side by side in one run.

Two models:

- ``cnn``: timm's tiny EfficientNet (``test_efficientnet``, 0.36M parameters) at 160 px, batch 16, every layer
  trainable: a realistic step (tens of milliseconds or more). Target: the engine at most 10 % slower.
- ``mlp``: a 3-layer MLP on 64 inputs, batch 64: a step of well under a millisecond, where any fixed per-step cost
  shows; reported as the absolute overhead in milliseconds (no target).

Each variant runs ``--rounds`` times, interleaved (bare, engine, engine + MLflow, bare, ...), because the machine is
shared; the median step time of each is reported. Step time: the median interval between consecutive ends of
training steps, within an epoch (epoch boundaries, validation and start-up excluded from both sides alike).

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/engine_overhead.py [--quick]
Saves benchmarks/results/engine_overhead.json.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from _harness import Benchmark


def make_model(kind: str) -> nn.Module:
    torch.manual_seed(0)
    if kind == "cnn":
        import timm

        return timm.create_model("test_efficientnet", pretrained=False, num_classes=10)
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))


def make_data(kind: str, n: int):
    from transferkit.engine.data import LabelledExamples

    rng = np.random.default_rng(0)
    shape = (3, 160, 160) if kind == "cnn" else (64,)
    items = torch.from_numpy(rng.normal(size=(n, *shape)).astype(np.float32))
    labels = rng.integers(0, 10, size=n)
    return LabelledExamples(items, labels, _identity)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


class StepTimer:
    """Intervals between consecutive step ends within an epoch."""

    def __init__(self) -> None:
        self.intervals: list[float] = []
        self._last: float | None = None

    def epoch_start(self) -> None:
        self._last = None

    def step_end(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.intervals.append(now - self._last)
        self._last = now


def run_bare(kind: str, batch: int, epochs: int, n: int) -> list[float]:
    """The loop a user would write: same loader, AdamW groups, warm-up + cosine schedule, cross-entropy."""
    from transferkit.engine.module import optimizer_groups, warmup_cosine
    from transferkit.engine.plan import TrainingPlan

    model = make_model(kind).train()
    data = make_data(kind, n)
    sampler = torch.utils.data.DistributedSampler(data, num_replicas=1, rank=0, shuffle=True, seed=0)
    from transferkit.engine.data import LabelledCollate

    loader = torch.utils.data.DataLoader(data, batch_size=batch, sampler=sampler, collate_fn=LabelledCollate(torch.stack))
    groups = optimizer_groups(TrainingPlan().param_groups(model, 1e-3), 0.01)
    optimizer = torch.optim.AdamW(groups, lr=1e-3)
    total = epochs * len(loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, total, total // 10))
    timer = StepTimer()
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        timer.epoch_start()
        for inputs, targets in loader:
            loss = F.cross_entropy(model(inputs), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            timer.step_end()
    return timer.intervals


def run_engine(kind: str, batch: int, epochs: int, n: int, mlflow: bool) -> list[float]:
    import lightning.pytorch as pl

    from transferkit.engine.data import LabelledCollate
    from transferkit.engine.plan import TrainingPlan
    from transferkit.engine.settings import EngineSettings
    from transferkit.engine.trainer import run_training

    timer = StepTimer()

    class Timing(pl.Callback):
        def on_train_epoch_start(self, trainer, pl_module) -> None:
            timer.epoch_start()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            timer.step_end()

    with tempfile.TemporaryDirectory() as work:
        uri = f"sqlite:///{Path(work) / 'mlflow.db'}" if mlflow else "off"
        settings = EngineSettings(work_dir=Path(work) / "run", epochs=epochs, batch_size=batch, lr=1e-3, patience=0,
                                  device="cpu", tracking_uri=uri, progress=False)
        run_training(make_model(kind), TrainingPlan(), make_data(kind, n), make_data(kind, batch), settings,
                     train_collate=LabelledCollate(torch.stack), val_collate=LabelledCollate(torch.stack),
                     callbacks=[Timing()])
    return timer.intervals


def main() -> None:
    bench = Benchmark("engine_overhead", __doc__, threads=1)
    parser = bench.parser(quick="fewer steps and rounds (a smoke run)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3, 1 with --quick)")
    args = bench.parse(parser)
    rounds = args.rounds or (1 if args.quick else 3)
    setups = {"cnn": dict(batch=16, epochs=2, n=16 * (8 if args.quick else 25)),
              "mlp": dict(batch=64, epochs=2, n=64 * (50 if args.quick else 200))}
    variants = {"bare loop": lambda k, s: run_bare(k, **s),
                "engine (CSV log)": lambda k, s: run_engine(k, **s, mlflow=False),
                "engine (CSV + MLflow SQLite)": lambda k, s: run_engine(k, **s, mlflow=True)}
    results: dict[str, dict] = {}
    for kind, setup in setups.items():
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(rounds):
            for name, fn in variants.items():
                with bench.step(f"{kind}: {name}"):
                    times[name].extend(fn(kind, setup))
        medians = {name: statistics.median(values) for name, values in times.items()}
        bare = medians["bare loop"]
        results[kind] = {
            **setup, "steps_timed": {k: len(v) for k, v in times.items()},
            "median_step_ms": {k: round(1000 * v, 3) for k, v in medians.items()},
            "engine_vs_bare": {k: round(v / bare, 3) for k, v in medians.items() if k != "bare loop"},
            "overhead_ms": {k: round(1000 * (v - bare), 3) for k, v in medians.items() if k != "bare loop"},
        }
    report = {"rounds": rounds, "quick": args.quick, "target": "cnn: engine (CSV log) <= 1.10 x bare loop",
              "results": results,
              "target_met": results["cnn"]["engine_vs_bare"]["engine (CSV log)"] <= 1.10}
    print(f"threads: {args.threads}, rounds: {rounds}")
    for kind, r in results.items():
        print(f"\n{kind}: batch {r['batch']}, median time per training step")
        for name, ms in r["median_step_ms"].items():
            ratio = r["engine_vs_bare"].get(name)
            print(f"  {name:<30} {ms:9.3f} ms" + (f"   {ratio:.3f} x bare" if ratio else ""))
    print(f"\ntarget ({report['target']}): {'met' if report['target_met'] else 'NOT met'}")
    bench.save("engine_overhead_quick" if args.quick else "engine_overhead", report)


if __name__ == "__main__":
    main()
