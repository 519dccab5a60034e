"""Does distillation beat training the same student without it, at the same data and budget? Side by side in one run.

- ``fashion``: teacher EfficientNet-Lite2 (ImageNet weights) fine-tuned on ``--teacher-shots`` labelled
  Fashion-MNIST images per class; students EfficientNet-Lite0 (ImageNet weights) and a small CNN
  (timm ``mobilenetv3_small_050``, 0.6M parameters, random initialisation), each trained on ``--shots`` labelled
  images per class (a subset of the teacher's) with and without distillation, and with distillation plus the rest
  of the teacher's images as unlabelled data (their labels hidden; more steps per epoch, so not the same budget).
  Every model runs at ``--image-size`` pixels (default 64; the packaged models' native 224-260 px cost 12-16x the
  compute, which the 2-core CPU this was sized for cannot spend).
- ``vader``: teacher all-mpnet-base-v2 as a linear probe on frozen features of ``--text-teacher-shots`` labelled
  movie-review snippets per class (fine-tuning MPNet's 110M parameters does not fit the CPU budget); student
  all-MiniLM-L6-v2 fine-tuned on ``--text-shots`` per class with and without distillation.

By default the students' labelled examples are a subset of the teacher's training examples (its outputs there are
fitted ones); ``--teacher-data disjoint`` trains the teacher on other examples of the same pool instead.

Same data and budget: each pair (distilled / plain) uses the same training examples, validation split, epochs,
batch size, learning rate and seed; only the loss differs. Mean over ``--seeds`` training seeds; paired bootstrap
intervals per seed come from ``transferkit.evaluation.verdict.compare``. Teacher outputs are computed once per
teacher and data (the feature cache), so the seeds do not rerun the teacher.

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/distill.py [--tasks fashion,vader] [--students lite0,cnn] [--quick]
Saves benchmarks/results/distill.json, or ``--output NAME`` (tasks run separately are merged, each with its command);
``--augment light --out distill_augment.json`` is the pair with augmented inputs (the teacher then runs live on each
augmented batch when it shares the student's preprocessing, as Lite2 and Lite0 do).
"""

from __future__ import annotations

import json
from pathlib import Path

from _harness import Benchmark, choose
from _tasks import rounded, vader_pools

BENCH = Benchmark("distill", __doc__, threads=1)
STUDENTS = {"lite0": ("efficientnet_lite0", 3e-4), "cnn": ("random:timm:mobilenetv3_small_050", 3e-3)}


def _without(dataset, rows):
    """Positions of ``dataset``'s examples whose row ids are not in ``rows``."""
    import numpy as np

    rows = set(rows.row_ids)
    return np.array([i for i, r in enumerate(dataset.row_ids) if r not in rows])


def _data(task: str, args):
    """(teacher training set, student labelled set, unlabelled set, test set)."""
    import numpy as np

    from transferkit.data.builtin import load_fashion_mnist
    from transferkit.data.splits import sample_per_class

    if task == "fashion":
        pool = load_fashion_mnist("train")
        test = sample_per_class(load_fashion_mnist("test"), args.n_test // 10, 0)
        shots, teacher_shots = args.shots, args.teacher_shots
    else:
        pool, held_out = vader_pools("movies")
        test = sample_per_class(held_out, args.n_test // 2, 0)
        shots, teacher_shots = args.text_shots, args.text_teacher_shots
    if args.teacher_data == "disjoint":  # the teacher never saw the students' examples
        student = sample_per_class(pool, shots, 1)
        teacher_train = sample_per_class(pool.subset(_without(pool, student), origin=pool.origin), teacher_shots, 0)
    else:  # the students' examples are part of the teacher's
        teacher_train = sample_per_class(pool, teacher_shots, 0)
        student = sample_per_class(teacher_train, shots, 1)
    rest = _without(teacher_train, student)
    # a seeded random sample of the rest: the rest is in the data's row order, and its first 200 VADER rows were
    # 85 % one class by the teacher's predictions (the student then learned a class prior, not the teacher)
    rest = np.sort(np.random.default_rng(2).permutation(rest)[: args.unlabelled])
    unlabelled = teacher_train.subset(rest, origin=f"{teacher_train.origin} (labels hidden)")
    unlabelled.labels = None
    return teacher_train, student, unlabelled, test


def _teacher(task: str, train, test, work: Path, args, echo) -> tuple[str, dict]:
    import transferkit as tk

    folder = work / (f"teacher-{task}" + ("-disjoint" if args.teacher_data == "disjoint" else ""))
    # Teachers are calibrated (temperature scaling on held-out logits): their soft targets are then probabilities
    # that mean what they say (an uncalibrated, strongly regularised probe's are nearly uniform).
    common = dict(test=test, progress=False, tracking_uri="off", device="cpu", baselines=["raw"],
                  cache_dir=str(work / "features"), batch_size=args.batch_size, seed=0, calibrate=True,
                  overwrite=True)
    if (folder / "config.json").is_file() and "calibrate: true" in (folder / "run_config.yaml").read_text():
        echo(f"[{task}] teacher reused from {folder}")
        metrics = json.loads((folder / "metrics.json").read_text())["test"]
        return str(folder), {"accuracy": metrics["accuracy"], "reused": True}
    with BENCH.step(f"teacher {task}") as step:
        if task == "fashion":
            result = tk.fit(train, backbone="efficientnet_lite2", strategy="finetune", epochs=args.teacher_epochs,
                            lr=args.teacher_lr, augment="none", image_size=args.image_size, output=str(folder),
                            work_dir=str(work / "runs-teacher"), patience=0, **common)
        else:
            result = tk.fit(train, backbone="all-mpnet-base-v2", strategy="linear-probe", max_length=args.max_length,
                            output=str(folder), **common)
    seconds = round(step.wall_s, 1)
    echo(f"[{task}] teacher {result.config['backbone']} {result.config['strategy']}: {result.accuracy:.4f} "
         f"({seconds:.0f} s)")
    return str(folder), {"accuracy": result.accuracy, "seconds": seconds, "backbone": result.config["backbone"],
                         "strategy": result.config["strategy"], "n_train": len(train)}


def run_task(task: str, args, work: Path, echo=print) -> dict:
    import numpy as np

    from transferkit.workflows.distill import distill

    teacher_train, labelled, unlabelled, test = _data(task, args)
    teacher_dir, teacher_row = _teacher(task, teacher_train, test, work, args, echo)
    students = [s for s in args.students.split(",") if s] if task == "fashion" else ["minilm"]
    out: dict = {"teacher": teacher_row, "teacher_data": args.teacher_data, "n_labelled": len(labelled),
                 "n_unlabelled": len(unlabelled),
                 "n_test": len(test), "students": {}}
    for key in students:
        if task == "fashion":
            name, lr = STUDENTS[key]
            epochs = args.epochs if key == "lite0" else args.cnn_epochs
            extra = dict(image_size=args.image_size, augment=args.augment)
        else:
            name, lr, epochs = "all-MiniLM-L6-v2", args.text_lr, args.text_epochs
            extra = dict(max_length=args.max_length, augment=args.augment)
        rows = []
        for seed in range(args.seeds):
            options = dict(teacher=teacher_dir, student=name, test=test, epochs=epochs, lr=lr, seed=seed,
                           batch_size=args.batch_size, progress=False, tracking_uri="off", device="cpu",
                           patience=0, cache_dir=str(work / "features"), work_dir=str(work / f"runs-{task}-{key}"),
                           distill={"temperature": args.temperature, "alpha": args.alpha,
                                    "feature_weight": args.feature_weight,
                                    **({"mixup": args.mixup} if args.mixup and task == "fashion" else {}),
                                    **({"variants": args.variants} if args.variants and task == "vader" else {})},
                           **extra)
            with BENCH.step(f"distilled and plain {task} {key}") as step:
                result = distill(labelled, compare_plain=True, **options)
            seconds = round(step.wall_s, 1)
            row = {"seed": seed, "distilled": result.accuracy, "plain": result.plain["accuracy"],
                   **rounded(result.comparison), "seconds_both": seconds,
                   "student_parameters": result.facts.get("total_parameters")}
            if args.unlabelled and not args.no_unlabelled_run:
                with BENCH.step(f"distilled with unlabelled {task} {key}") as step:
                    with_u = distill(labelled, unlabelled=unlabelled, **options)
                row["distilled_with_unlabelled"] = with_u.accuracy
                row["seconds_with_unlabelled"] = round(step.wall_s, 1)
            rows.append(row)
            echo(f"[{task}] {key} seed {seed}: distilled {row['distilled']:.4f}  plain {row['plain']:.4f}  "
                 f"({100 * row['difference']:+.1f} points)"
                 + (f"  + unlabelled {row['distilled_with_unlabelled']:.4f}" if "distilled_with_unlabelled" in row
                    else "") + f"  [{seconds:.0f} s]")
        mean = {k: round(float(np.mean([r[k] for r in rows])), 4)
                for k in ("distilled", "plain", "difference", "distilled_with_unlabelled") if k in rows[0]}
        out["students"][key] = {"backbone": name, "lr": lr, "epochs": epochs, "per_seed": rows, "mean": mean,
                                "target_met": bool(mean["difference"] >= 0.01)}
    return out


def main() -> None:
    parser = BENCH.parser(quick="one seed, small sets, 2 epochs", seeds=3, work=True)
    parser.add_argument("--tasks", default="fashion,vader")
    parser.add_argument("--students", default="lite0,cnn", help="fashion students: lite0, cnn")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--teacher-shots", type=int, default=200, help="Fashion-MNIST images per class for the teacher")
    parser.add_argument("--shots", type=int, default=50, help="Fashion-MNIST labelled images per class for the students")
    parser.add_argument("--text-teacher-shots", type=int, default=500)
    parser.add_argument("--text-shots", type=int, default=150)
    parser.add_argument("--unlabelled", type=int, default=500, help="unlabelled examples (teacher data, labels hidden)")
    parser.add_argument("--no-unlabelled-run", action="store_true")
    parser.add_argument("--teacher-data", choices=("superset", "disjoint"), default="superset",
                        help="superset: the students' labelled examples are among the teacher's training examples "
                        "(its soft targets there are fitted ones); disjoint: the teacher is trained on other examples")
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--teacher-epochs", type=int, default=4)
    parser.add_argument("--teacher-lr", type=float, default=5e-4)
    parser.add_argument("--epochs", type=int, default=5, help="Lite0 student epochs")
    parser.add_argument("--cnn-epochs", type=int, default=10)
    parser.add_argument("--text-epochs", type=int, default=3)
    parser.add_argument("--text-lr", type=float, default=1e-4)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--augment", default="none", help="students' augmentation preset (both of each pair); with "
                        "one, the teachers run live on the augmented inputs instead of from the cache")
    parser.add_argument("--mixup", type=float, default=0.0, help="images: mixup alpha for both students of a pair "
                        "(the distilled one's teacher sees the mixed batch)")
    parser.add_argument("--variants", type=int, default=0, help="text: word-dropout versions of each labelled text, "
                        "teacher outputs cached, read at random by both students of a pair")
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--alpha", type=float, default=0.9)
    parser.add_argument("--feature-weight", type=float, default=0.0, help="weight of feature matching between the "
                        "student's pooled features and the teacher's, through a learnable projection (0 = off)")
    args = BENCH.parse(parser)
    if args.quick:
        args.teacher_shots, args.shots, args.unlabelled, args.n_test = 60, 20, 100, 300
        args.text_teacher_shots, args.text_shots = 100, 50
        args.teacher_epochs, args.epochs, args.cnn_epochs, args.text_epochs, args.seeds = 2, 2, 3, 2, 1
    tasks = choose(parser, "--tasks", args.tasks, ("fashion", "vader"))
    choose(parser, "--students", args.students, tuple(STUDENTS))
    results_name = "distill_quick" if args.quick else "distill"
    BENCH.previous(results_name)  # merged into at the end: a damaged file stops the run here, not after it
    work = BENCH.work_folder()  # the teachers are kept there and reused
    report = {"settings": BENCH.settings("work"), "tasks": {task: run_task(task, args, work) for task in tasks}}
    for task, r in report["tasks"].items():
        print(f"\n{task}: teacher {r['teacher']['accuracy']:.4f}; {r['n_labelled']} labelled, {r['n_unlabelled']} "
              f"unlabelled, {r['n_test']} test")
        for key, s in r["students"].items():
            m = s["mean"]
            print(f"  {key:<6} distilled {m['distilled']:.4f}  plain {m['plain']:.4f}  difference "
                  f"{100 * m['difference']:+.1f} points (mean of {len(s['per_seed'])} seeds; target >= +1: "
                  f"{'met' if s['target_met'] else 'missed'})"
                  + (f"  distilled + unlabelled {m['distilled_with_unlabelled']:.4f}"
                     if "distilled_with_unlabelled" in m else ""))
    print()
    BENCH.save(results_name, report, merge="tasks")


if __name__ == "__main__":
    main()
