"""Feature-extraction throughput: transferkit's extraction path against ONNX Runtime on the same model and inputs.

EfficientNet-Lite0 (packaged ImageNet weights), 224 px, batch 64, CPU. One run, repetitions interleaved
(A, B, C, A, B, C, ...) so that load from other processes hits every side alike; the median is reported.
PyTorch and ONNX Runtime use the same number of threads (``--threads``; ORT ``intra_op_num_threads``).

1. Model only, on one prepared batch of 64 Fashion-MNIST test images (already resized and normalised):
   - ``plain eager``: ``backbone.forward_features(batch)`` in ``torch.inference_mode`` with channels-last memory
     (the floor: what a hand-written loop does);
   - ``transferkit``: ``transferkit.features.extract.forward_batch`` (what ``run_backbone`` runs per batch);
   - ``onnxruntime``: the same backbone exported by ``transferkit.compress.onnx.export_backbone``.
   The largest absolute difference of each side's features from the plain eager ones is reported.
2. End to end (decode PNG files + resize + normalise + model), on ``--images`` Fashion-MNIST test images written
   as PNG files to a temporary image folder:
   - ``plain eager loop``: a DataLoader with the backbone's prepare/collate and ``forward_features`` per batch;
   - ``transferkit``: ``extract_features(..., cache=None)``, the default runtime (``auto``: ONNX Runtime from 1,000
     examples on, so the default ``--images 1024`` measures that; the runtime it chose is printed and saved);
   - ``transferkit runtime=torch``: ``extract_features(..., cache=None, runtime="torch")``;
   - ``transferkit runtime=onnx``: ``extract_features(..., cache=None, runtime="onnx")``;
   - ``onnxruntime``: ``OnnxFeatureExtractor.run`` (the same preprocessing code, ONNX Runtime for the model).

Targets: transferkit's PyTorch kernels >= 0.9x ONNX Runtime (model only); the default path >= 1.0x ONNX Runtime
(end to end).

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/extract_throughput.py [--threads 1] [--reps 7] [--images 1024]
      [--quick]
Saves benchmarks/results/extract_throughput.json (or extract_throughput_quick.json).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from _harness import Benchmark

TARGET_RATIO = 0.9
BATCH = 64
BENCH = Benchmark("extract_throughput", __doc__, threads=1)


def parse_args() -> argparse.Namespace:
    parser = BENCH.parser(quick="fewer repetitions and images (a smoke run)")
    parser.add_argument("--reps", type=int, default=7, help="interleaved repetitions of the model-only timing")
    parser.add_argument("--e2e-reps", type=int, default=3, help="interleaved repetitions of the end-to-end timing")
    parser.add_argument("--images", type=int, default=1024, help="images in the end-to-end run")
    return BENCH.parse(parser)


def interleaved(sides: dict, reps: int, count: int) -> dict[str, dict[str, float]]:
    """Time every side ``reps`` times, alternating; images per second (median, best) per side.

    Wall-clock time is the figure; the process's CPU time is recorded beside it (``cpu_images_per_s_median``)
    because on a shared machine it is less disturbed by other processes taking the cores.
    """
    for run in sides.values():  # warm-up (builds caches, inference copies, ORT arenas)
        run()
    wall: dict[str, list[float]] = {name: [] for name in sides}
    cpu: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(reps):
        for name, run in sides.items():
            with BENCH.step(name) as step:
                run()
            cpu[name].append(step.cpu_s)
            wall[name].append(step.wall_s)
    return {name: {"images_per_s_median": count / statistics.median(wall[name]),
                   "images_per_s_best": count / min(wall[name]),
                   "cpu_images_per_s_median": count / statistics.median(cpu[name]),
                   "seconds": wall[name], "cpu_seconds": cpu[name]} for name in sides}


def show(rows: dict[str, dict[str, float]], width: int) -> None:
    for name, row in rows.items():
        print(f"  {name:<{width}} {row['images_per_s_median']:7.1f} / {row['images_per_s_best']:7.1f}"
              f"   (CPU time: {row['cpu_images_per_s_median']:7.1f})")


def write_png_folder(root: Path, n: int) -> Path:
    from PIL import Image

    from transferkit.data.builtin import load_fashion_mnist

    data = load_fashion_mnist("test")
    for i in range(n):
        folder = root / data.labels[i]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(data.items[i]).save(folder / f"{i:05d}.png")
    return root


def main() -> None:
    args = parse_args()
    if args.quick:
        args.reps, args.e2e_reps, args.images = 3, 2, 128
    import numpy as np
    import torch
    from torch.utils.data import DataLoader

    from transferkit.backbones import create_backbone
    from transferkit.compress.onnx import OnnxFeatureExtractor, export_backbone, onnx_session
    from transferkit.data.builtin import load_fashion_mnist
    from transferkit.data.sources import load_data
    from transferkit.features.extract import PreparedItems, choose_runtime, extract_features, forward_batch

    env = BENCH.environment()
    print(f"CPU: {env['cpu']} ({env['cpu_count']} cores); PyTorch and ONNX Runtime on {args.threads} thread(s); "
          f"torch {env['versions'].get('torch')}, onnxruntime {env['versions'].get('onnxruntime')}")
    backbone = create_backbone("efficientnet_lite0").eval()
    work = Path(tempfile.mkdtemp(prefix="tk-extract-bench-"))
    with BENCH.step("export") as step:
        export = export_backbone(backbone, work / "lite0.onnx", tolerance=1e-4)
    print(f"exported in {step.wall_s:.1f} s; parity max difference {export.parity.max_abs_diff:.1e}")
    session = onnx_session(export.path, threads=args.threads)

    # 1. Model only.
    test = load_fashion_mnist("test")
    batch = backbone.collate([backbone.prepare(test.items[i]) for i in range(BATCH)])
    backbone.to(memory_format=torch.channels_last)
    feed = {"pixels": np.ascontiguousarray(batch.numpy())}

    def plain():
        with torch.inference_mode():
            return backbone.forward_features(batch)

    def transferkit_path():
        with torch.inference_mode():
            return forward_batch(backbone, batch)

    def ort():
        return session.run(None, feed)[0]

    reference = plain().numpy()
    diff_tk = float(np.abs(transferkit_path().numpy() - reference).max())
    diff_ort = float(np.abs(ort() - reference).max())
    model_only = interleaved({"plain eager": plain, "transferkit": transferkit_path, "onnxruntime": ort},
                             args.reps, BATCH)
    ratio = model_only["transferkit"]["images_per_s_median"] / model_only["onnxruntime"]["images_per_s_median"]
    cpu_ratio = (model_only["transferkit"]["cpu_images_per_s_median"]
                 / model_only["onnxruntime"]["cpu_images_per_s_median"])
    print(f"\nmodel only, batch {BATCH} at 224 px, {args.reps} interleaved repetitions (median / best images per s):")
    show(model_only, 12)
    print(f"  transferkit / onnxruntime = {ratio:.2f} (CPU time {cpu_ratio:.2f}; target >= {TARGET_RATIO}); max "
          f"|difference| from plain eager: transferkit {diff_tk:.1e}, onnxruntime {diff_ort:.1e}")

    # 2. End to end from PNG files.
    folder = write_png_folder(work / "images", args.images)
    data = load_data(str(folder))
    extractor = OnnxFeatureExtractor(export.path, backbone, threads=args.threads)

    def plain_loop():
        loader = DataLoader(PreparedItems(data, backbone), batch_size=BATCH, collate_fn=backbone.collate)
        with torch.inference_mode():
            return np.concatenate([backbone.forward_features(b).numpy() for b in loader])

    def transferkit_e2e():
        return extract_features(backbone, data, cache=None, batch_size=BATCH, device="cpu", progress=False)

    def transferkit_torch_e2e():
        return extract_features(backbone, data, cache=None, batch_size=BATCH, device="cpu", progress=False,
                                runtime="torch")

    def transferkit_onnx_e2e():
        return extract_features(backbone, data, cache=None, batch_size=BATCH, device="cpu", progress=False,
                                runtime="onnx")

    def ort_e2e():
        return extractor.run(data, batch_size=BATCH)

    e2e_diff = float(np.abs(transferkit_e2e() - ort_e2e()).max())
    e2e_diff_onnx_runtime = float(np.abs(transferkit_onnx_e2e() - ort_e2e()).max())
    with BENCH.step("decode and preprocess") as step:
        for i in range(len(data)):
            backbone.prepare(data.items[i])
    prepare_per_image_ms = step.wall_s / len(data) * 1e3
    default_runtime = choose_runtime("auto", backbone, "cpu", len(data))
    end_to_end = interleaved({"plain eager loop": plain_loop, "transferkit": transferkit_e2e,
                              "transferkit runtime=torch": transferkit_torch_e2e,
                              "transferkit runtime=onnx": transferkit_onnx_e2e, "onnxruntime": ort_e2e},
                             args.e2e_reps, len(data))
    e2e_ratio = end_to_end["transferkit"]["images_per_s_median"] / end_to_end["onnxruntime"]["images_per_s_median"]
    e2e_ratio_onnx = (end_to_end["transferkit runtime=onnx"]["images_per_s_median"]
                      / end_to_end["onnxruntime"]["images_per_s_median"])
    print(f"\nend to end (decode PNG + resize + normalise + model), {len(data)} images, batch {BATCH}, "
          f"{args.e2e_reps} interleaved repetitions (median / best images per s):")
    show(end_to_end, 24)
    e2e_ratio_torch = (end_to_end["transferkit runtime=torch"]["images_per_s_median"]
                       / end_to_end["onnxruntime"]["images_per_s_median"])
    print(f"  default runtime for {len(data)} images: {default_runtime}")
    print(f"  transferkit / onnxruntime = {e2e_ratio:.2f}, runtime='torch' {e2e_ratio_torch:.2f}, runtime='onnx' "
          f"{e2e_ratio_onnx:.2f}; decode + "
          f"preprocessing alone {prepare_per_image_ms:.2f} ms per image; max |difference| from onnxruntime's "
          f"features: transferkit {e2e_diff:.1e}, runtime='onnx' {e2e_diff_onnx_runtime:.1e}")

    result = {
        "model": "efficientnet_lite0 (packaged ImageNet weights), 224 px",
        "batch_size": BATCH,
        "model_only": {**model_only, "transferkit_over_onnxruntime": ratio,
                       "transferkit_over_onnxruntime_cpu_time": cpu_ratio,
                       "max_abs_diff_vs_plain_eager": {"transferkit": diff_tk, "onnxruntime": diff_ort}},
        "end_to_end": {**end_to_end, "images": len(data), "transferkit_over_onnxruntime": e2e_ratio,
                       "transferkit_runtime_onnx_over_onnxruntime": e2e_ratio_onnx,
                       "transferkit_runtime_torch_over_onnxruntime": e2e_ratio_torch,
                       "default_runtime": default_runtime,
                       "decode_and_preprocess_ms_per_image": prepare_per_image_ms,
                       "max_abs_diff_transferkit_vs_onnxruntime": e2e_diff},
        "target": {"transferkit_over_onnxruntime_min": TARGET_RATIO, "met": bool(ratio >= TARGET_RATIO)},
        "max_abs_diff_runtime_onnx_vs_onnxruntime": e2e_diff_onnx_runtime,
    }
    print()
    BENCH.save("extract_throughput_quick" if args.quick else "extract_throughput", result)


if __name__ == "__main__":
    sys.exit(main())
