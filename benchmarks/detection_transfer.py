"""Object detection: the FCOS detector on pretrained EfficientNet-Lite0 against the same detector from random weights,
at 100 and 500 training images, over seeds: mAP@0.5 (and mAP@[.5:.95]) on held-out test images, the 95 % bootstrap
interval over images of the difference (transferkit's verdict), and training seconds per epoch.

Data (``transferkit.data.detection_synth``): real objects on real photographs. Objects are Fashion-MNIST items of
five classes (t-shirt, trouser, sneaker, bag, ankle-boot), tinted a random colour, scaled to 20-50 % of the image
side, 1 to 4 per image (partial occlusion allowed, box IoU < 0.3), on random crops of the twelve nature photographs
of Debian's mate-backgrounds package (GPL-2+; `make detection-data` installs it). Held out: the test images are
composed from Fashion-MNIST's test items on three photographs that no training image uses (TwoWings, Wood,
YellowFlower); training and validation images from its training items on the other nine. Every model comes from
``transferkit.fit(task="detection", strategy="finetune")``, whose scratch baseline trains the same detector from
random weights for the same epochs (its backbone at the head's learning rate); validation mAP@0.5 picks the epoch.

    python benchmarks/detection_transfer.py                       # 100 and 500 images, seeds 0,1,2
    python benchmarks/detection_transfer.py --quick               # 100 images, one seed, 4 epochs
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from _harness import Benchmark

CLASSES = ("t-shirt", "trouser", "sneaker", "bag", "ankle-boot")
PHOTOS = Path("/usr/share/backgrounds/mate/nature")
TEST_PHOTOS = ("TwoWings.jpg", "Wood.jpg", "YellowFlower.jpg")


def photographs(test: bool) -> list[np.ndarray]:
    from PIL import Image

    if not PHOTOS.is_dir():
        raise SystemExit(f"{PHOTOS} is missing: run `make detection-data` (Debian's mate-backgrounds).")
    names = sorted(p.name for p in PHOTOS.glob("*.jpg"))
    chosen = [n for n in names if (n in TEST_PHOTOS) == test]
    out = []
    for name in chosen:
        with Image.open(PHOTOS / name) as image:
            image = image.convert("RGB")
            image.thumbnail((640, 640))
            out.append(np.asarray(image))
    return out


def objects(split: str) -> tuple[np.ndarray, np.ndarray]:
    from transferkit.data.builtin import FASHION_MNIST_CLASSES, load_fashion_mnist

    data = load_fashion_mnist(split)
    wanted = {FASHION_MNIST_CLASSES.index(c): i for i, c in enumerate(CLASSES)}
    keep = [i for i, label in enumerate(data.labels) if FASHION_MNIST_CLASSES.index(label) in wanted]
    images = np.stack([data.items[i] for i in keep])
    return images, np.array([wanted[FASHION_MNIST_CLASSES.index(data.labels[i])] for i in keep])


def compose(folder: Path, n: int, split: str, test: bool, seed: int, size: int) -> str:
    from transferkit.data.detection_synth import compose_detection_set

    if not (folder / "annotations.json").is_file():
        items, labels = objects(split)
        compose_detection_set(folder, items, labels, CLASSES, photographs(test), n_images=n, image_size=size,
                              seed=seed)
    return str(folder)


def run(args, work: Path, n_train: int, seed: int) -> dict:
    import transferkit as tk

    train = compose(work / f"train_{n_train}_seed{seed}", n_train, "train", False, 1000 * seed + n_train, args.size)
    val = compose(work / f"val_seed{seed}", args.val, "train", False, 1000 * seed + 7, args.size)
    test = compose(work / "test", args.test, "test", True, 99, args.size)
    started = time.perf_counter()
    result = tk.fit(train, val=val, test=test, task="detection", backbone="efficientnet_lite0", strategy="finetune",
                    baselines=["scratch"], epochs=args.epochs, patience=args.patience, image_size=args.size,
                    batch_size=args.batch_size, seed=seed, device=args.device, augment="light", output=None,
                    progress=False)
    comparison = result.comparisons[0]
    scratch = result.baselines["scratch"]
    row = {"n_train": n_train, "seed": seed, "wall_s": round(time.perf_counter() - started, 1),
           "transfer": {"map_50": result.metrics["map_50"], "map": result.metrics["map"],
                        "epochs": result.training["epochs"],
                        "seconds_per_epoch": round(result.training["seconds_per_epoch"], 2),
                        "per_class_ap_50": {c: v["ap_50"] for c, v in result.metrics["per_class"].items()}},
           "scratch": {"map_50": scratch["map_50"], "map": scratch["map"], "epochs": scratch["training"]["epochs"],
                       "seconds_per_epoch": round(scratch["training"]["seconds_per_epoch"], 2)},
           "difference_map_50": comparison.difference, "interval_95": [comparison.ci_low, comparison.ci_high],
           "verdict": comparison.verdict}
    print(f"n={n_train} seed={seed}: transfer mAP@0.5 {row['transfer']['map_50']:.3f}, scratch "
          f"{row['scratch']['map_50']:.3f}, difference {100 * comparison.difference:+.1f} points "
          f"[{100 * comparison.ci_low:+.1f}, {100 * comparison.ci_high:+.1f}], "
          f"{row['transfer']['seconds_per_epoch']:.1f} s/epoch (transfer), {row['wall_s']:.0f} s", flush=True)
    return row


def main() -> None:
    bench = Benchmark("detection_transfer", __doc__, threads=None)
    parser = bench.parser(quick="100 training images, seed 0, 4 epochs", seeds="0,1,2", work=True)
    parser.add_argument("--sizes", default="100,500", help="training-set sizes (images), comma-separated")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--size", type=int, default=128, help="image side in pixels (composed and trained at)")
    parser.add_argument("--val", type=int, default=60, help="validation images")
    parser.add_argument("--test", type=int, default=200, help="test images")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="auto")
    args = bench.parse(parser)
    sizes = [100] if args.quick else [int(s) for s in args.sizes.split(",")]
    seeds = [0] if args.quick else args.seeds
    if args.quick:
        args.epochs = 4
    rows = []
    name = "detection_transfer_quick" if args.quick else "detection_transfer"
    for n_train in sizes:
        for seed in seeds:
            with bench.step(f"fit {n_train}"):
                rows.append(run(args, bench.work_folder(), n_train, seed))
            bench.save(name, {"settings": bench.settings("work"), "runs": rows, "summary": summary(rows)}, echo=False)
    print(bench.save(name, {"settings": bench.settings("work"), "runs": rows, "summary": summary(rows)}))


def summary(rows: list[dict]) -> dict:
    out = {}
    for n_train in sorted({r["n_train"] for r in rows}):
        picked = [r for r in rows if r["n_train"] == n_train]
        out[str(n_train)] = {
            "seeds": len(picked),
            "transfer_map_50_mean": float(np.mean([r["transfer"]["map_50"] for r in picked])),
            "scratch_map_50_mean": float(np.mean([r["scratch"]["map_50"] for r in picked])),
            "difference_points_mean": float(100 * np.mean([r["difference_map_50"] for r in picked])),
            "verdicts": [r["verdict"] for r in picked],
            "transfer_seconds_per_epoch_mean": float(np.mean([r["transfer"]["seconds_per_epoch"] for r in picked])),
        }
    return out


if __name__ == "__main__":
    main()
