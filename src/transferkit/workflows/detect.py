"""``fit --task-type detection``: train an object detector from a pretrained backbone and judge it against the
same detector trained from random weights.

The steps: check the options that apply (strategy, device, libraries, output folder); read and check the
training, validation and test boxes (COCO JSON, YOLO txt or Pascal VOC XML; validation and test held out of the
training images when not given); build the detector on the backbone (:mod:`transferkit.models.detector`); train
it (:mod:`transferkit.engine.detection`); save it; score it on the test images (COCO mAP through torchmetrics);
train the scratch baseline and compare the two by a bootstrap over test images; write examples of predicted and
true boxes beside the model.

What the strategies mean for a detector (``finetune`` when the run names none): ``linear-probe`` trains the
feature pyramid and the head on the frozen backbone; ``finetune`` trains everything (``finetune.freeze`` keeps the
first layer groups frozen); ``lp-ft`` trains the head on the frozen backbone for the first third of the epochs,
then everything; ``l2sp`` trains everything as ``finetune`` with the L2-SP penalty towards the pretrained backbone
(``l2sp.alpha``, ``l2sp.beta``) in place of weight decay; ``lora`` trains low-rank adapters on the backbone's linear
and pointwise convolution layers (``lora.*``; learning rate 1e-3 unless ``--lr``) with the pyramid and head, and
merges them into the weights at the end.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transferkit.errors import ConfigError, DataError
from transferkit.workflows.steps import check_model_output, check_runtime, timed

log = logging.getLogger("transferkit")

#: The strategies a detector trains by: the part of the epochs with the backbone frozen (None: all of them), and
#: what else changes: the L2-SP penalty, LoRA adapters (and their learning rate) in place of the backbone's weights.
DETECTION_STRATEGIES: dict[str, dict[str, Any]] = {
    "linear-probe": {"frozen": None}, "finetune": {"frozen": 0.0}, "lp-ft": {"frozen": 1 / 3},
    "l2sp": {"frozen": 0.0, "penalty": True}, "lora": {"frozen": 0.0, "adapters": True, "lr": 1e-3}}
#: The strategy of a detection run that names none: the whole detector trains (a frozen backbone under a new
#: pyramid and head falls far behind on boxes).
DEFAULT_STRATEGY = "finetune"
#: FitConfig options a detection run does not read, each set to something else than its default: a warning.
IGNORED_OPTIONS = ("shots", "probe_c", "mixup", "cutmix", "auto_augment", "max_length", "calibrate", "budget",
                   "init_from", "activation_checkpointing", "accumulate")
#: The default input size: the shorter side of each image, in pixels.
DEFAULT_IMAGE_SIZE = 320
#: The default learning rates of a new pyramid and head, and of a pretrained backbone.
HEAD_LR, BACKBONE_LR = 1e-3, 1e-4
#: Test images with predicted and true boxes kept in ``examples.json``, and hardest misses in ``hardest_misses.json``.
EXAMPLES = 12


@dataclass
class DetectionFitResult:
    """What a detection ``fit`` produced (the same reading as :class:`~transferkit.workflows.fit.FitResult`)."""

    model: Any
    config: dict[str, Any]
    metrics: dict[str, Any]
    baselines: dict[str, dict[str, Any]] = field(default_factory=dict)
    comparisons: list[Any] = field(default_factory=list)
    output: Path | None = None
    training: dict[str, Any] = field(default_factory=dict)
    is_main_process: bool = True

    def summary(self) -> str:
        """mAP@0.5 and mAP@[.5:.95] of the model and its baselines, per-class AP@0.5 and the verdicts."""
        rows = [(f"{self.config['backbone']} ({self.config['strategy']})", self.metrics)]
        rows += [(f"baseline: {name}", m) for name, m in self.baselines.items()]
        width = max(len(name) for name, _ in rows)
        lines = [f"{'model':<{width}}  {'mAP@0.5':>10}  {'mAP@.5:.95':>10}", "-" * (width + 24)]
        lines += [f"{name:<{width}}  {_cell(m.get('map_50'))}  {_cell(m.get('map'))}" for name, m in rows]
        lines += ["", "per-class AP@0.5: " + ", ".join(f"{c} {_cell(v['ap_50']).strip()}"
                                                       for c, v in self.metrics["per_class"].items())]
        lines += [f"verdict: {c.sentence()}" for c in self.comparisons]
        return "\n".join(lines)


def _cell(value: Any) -> str:
    return f"{value:10.4f}" if isinstance(value, (int, float)) else f"{'-':>10}"


def fit_detector(config: Any, data: Any, val: Any = None, test: Any = None) -> DetectionFitResult:
    """Train and evaluate a detector on ``data`` (a COCO file or folder, a YOLO or VOC folder) by ``config`` (a
    :class:`~transferkit.config.FitConfig` whose task is detection)."""
    config = _check_before_work(config, data, val, test)
    timings: dict[str, float] = {}
    with timed(timings, "load"):
        train, val_set, test_set = _load_boxes(config, data, val, test)
    name = config.backbone or "efficientnet_lite0"
    with timed(timings, "train"):
        model, facts = _train(name, train, val_set, config, baseline=False)
    run_config = config.resolved(backbone=name, classes=train.classes, modality="image", n_train=len(train),
                                 n_val=len(val_set), n_test=len(test_set), training=_without_history(facts))
    result = DetectionFitResult(model, run_config, {}, training=facts)
    result.output = _save(model, config, run_config, {"pending": "test evaluation"})
    with timed(timings, "evaluate"):
        predictions = model.detect(test_set.images, batch_size=config.batch_size, device=_device(config))
        result.metrics = _metrics(predictions, test_set)
    if _runs_scratch(config, len(train)):
        with timed(timings, "scratch baseline"):
            _scratch_baseline(result, name, train, val_set, test_set, predictions, config)
    _finish(result, predictions, test_set, timings)
    _report(result, config)
    return result


def _check_before_work(config: Any, data: Any, val: Any, test: Any) -> Any:
    if "strategy" not in config.model_fields_set:  # fit's default (a probe) is not what a detector wants
        config = config.model_copy(update={"strategy": DEFAULT_STRATEGY})
    if config.strategy not in DETECTION_STRATEGIES:
        raise ConfigError(f"option 'strategy': a detector trains by {', '.join(DETECTION_STRATEGIES)}; got "
                          f"{config.strategy!r}. Use --strategy finetune (or one of the others).")
    if config.backbone == "auto":
        raise ConfigError("option 'backbone': auto ranks backbones for classification; name a backbone for a "
                          "detector (efficientnet_lite0, timm:ARCH).")
    changed = [o for o in IGNORED_OPTIONS if getattr(config, o) != type(config).model_fields[o].default]
    if changed:
        warnings.warn(f"options {', '.join(changed)} do not apply to a detector and are ignored.", stacklevel=3)
    check_runtime(config.device, "a detector")
    import importlib.util

    if importlib.util.find_spec("pycocotools") is None:
        raise ConfigError("--task-type detection scores boxes with the COCO evaluation, which needs the 'pycocotools' "
                          "package; install the detection extra: pip install 'transferkit[detection]'.")
    return check_model_output(config, inputs=[("training data", data), ("validation data", val),
                                              ("test data", test), ("backbone", config.backbone)])


def _load_boxes(config: Any, data: Any, val: Any, test: Any) -> tuple[Any, Any, Any]:
    """The three sets, read and checked; test and validation images held out of ``data`` when not given."""
    from transferkit.data.detection import check_detection_set, read_detection, split_detection_set

    train = read_detection(data)
    test_set = read_detection(test) if test is not None else None
    val_set = read_detection(val) if val is not None else None
    if test_set is None:
        train, test_set = split_detection_set(train, config.test_fraction, config.seed)
    if val_set is None:
        train, val_set = split_detection_set(train, config.val_fraction, config.seed + 1)
    for role, dataset in (("training", train), ("validation", val_set), ("test", test_set)):
        check_detection_set(dataset, role=role)
        if dataset.classes != train.classes:
            raise DataError(f"{role} data {dataset.origin}: classes {dataset.classes} differ from the training "
                            f"data's {train.classes}; give both the same class list in the same order.")
    return train, val_set, test_set


def _device(config: Any) -> str:
    from transferkit.features.extract import resolve_device

    return str(resolve_device(config.device))


def _settings(config: Any, *, baseline: bool) -> Any:
    from transferkit.engine.detection import DetectorTraining

    entry = {"frozen": 0.0} if baseline else DETECTION_STRATEGIES[config.strategy]  # the baseline: finetune
    frozen = entry["frozen"]
    head_lr = config.head_lr or HEAD_LR
    return DetectorTraining(
        epochs=config.epochs, lr=head_lr if baseline else (config.lr or entry.get("lr", BACKBONE_LR)),
        head_lr=head_lr,
        weight_decay=config.weight_decay, warmup=config.warmup,
        frozen_epochs=0 if baseline else (config.epochs if frozen is None else int(frozen * config.epochs)),
        freeze=0 if baseline else config.finetune.freeze,
        bn_frozen=not baseline and config.finetune.bn_statistics != "update",
        batch_size=config.batch_size, patience=config.patience, seed=config.seed, device=config.device,
        precision=config.precision, deterministic=config.deterministic, num_workers=config.num_workers,
        progress=bool(config.progress),
        l2sp=(config.l2sp.alpha, config.l2sp.beta) if entry.get("penalty") else None,
        lora=config.lora if entry.get("adapters") else None)


def _train(name: str, train: Any, val: Any, config: Any, *, baseline: bool) -> tuple[Any, dict[str, Any]]:
    """The detector on backbone ``name`` (random weights for the baseline), trained; and the run's facts."""
    from transferkit.data.detection_augment import box_augmentation
    from transferkit.engine.detection import train_detector
    from transferkit.models.detector import DetectionModel, build_detector

    backbone = f"random:{name.removeprefix('random:')}" if baseline else name
    network, spec = build_detector(backbone, train.classes, image_size=config.image_size or DEFAULT_IMAGE_SIZE)
    facts = train_detector(network, train, val, _settings(config, baseline=baseline),
                           augmentation=box_augmentation(config.augment))
    strategy = "finetune" if baseline else config.strategy
    return DetectionModel(network, train.classes, spec, strategy=strategy), facts


def _without_history(facts: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in facts.items() if k != "history"}


def _save(model: Any, config: Any, run_config: dict[str, Any], metrics: dict[str, Any]) -> Path | None:
    if config.output is None:
        return None
    from transferkit.models.artifact_kinds import save_detection

    return save_detection(model, config.output, metrics=metrics, run_config=run_config,
                          overwrite=config.overwrite, keep_beside=True)


def _metrics(predictions: list[Any], test_set: Any) -> dict[str, Any]:
    from transferkit.evaluation.detection_metrics import detection_metrics

    return detection_metrics(predictions, test_set.targets(), test_set.classes)


def _runs_scratch(config: Any, n_train: int) -> bool:
    """The scratch baseline runs when asked for, and by default on up to 2,000 training images."""
    if config.baselines is not None:
        return "scratch" in config.baselines
    return n_train <= 2000 and not str(config.backbone or "").startswith("random:")


def _scratch_baseline(result: DetectionFitResult, name: str, train: Any, val: Any, test_set: Any,
                      predictions: list[Any], config: Any) -> None:
    """The same detector from random weights, trained as long; its metrics and the verdict of the model against it."""
    from transferkit.evaluation.detection_metrics import compare_detectors

    scratch, facts = _train(name, train, val, config, baseline=True)
    found = scratch.detect(test_set.images, batch_size=config.batch_size, device=_device(config))
    result.baselines["scratch"] = {**_metrics(found, test_set), "training": _without_history(facts)}
    result.comparisons.append(compare_detectors(predictions, found, test_set.targets(), "scratch",
                                                seed=config.seed))


def _finish(result: DetectionFitResult, predictions: list[Any], test_set: Any, timings: dict[str, float]) -> None:
    """``metrics.json``, ``summary.txt``, ``examples.json`` (predicted and true boxes of test images) and
    ``hardest_misses.json`` (the test images whose boxes were missed most) in the model folder, both drawn."""
    if result.output is None:
        return
    from transferkit.models.folder import update_model_folder
    from transferkit.reporting.detection import MISSES_FILE

    examples = [_boxes_record(test_set, i, predictions[i]) for i in range(min(EXAMPLES, len(test_set)))]
    misses = _hardest_misses(predictions, test_set)
    metrics = {"test": result.metrics, "baselines": result.baselines,
               "comparisons": [c.to_dict() for c in result.comparisons],
               "training": result.training, "timings_s": timings}
    update_model_folder(result.output, metrics=metrics, files={
        "summary.txt": result.summary() + "\n", "examples.json": json.dumps(examples, indent=1) + "\n",
        MISSES_FILE: json.dumps(misses, indent=1) + "\n"})
    _draw_examples(result.output / "examples", examples)
    _draw_examples(result.output / "misses", misses)


def _boxes_record(test_set: Any, index: int, found: dict[str, Any]) -> dict[str, Any]:
    """One test image: its path, its 20 best detections and its true boxes."""
    from transferkit.models.detector import detection_list

    return {"image": str(test_set.images[index]), "predicted": detection_list(found, test_set.classes)[:20],
            "true": [{"label": test_set.classes[int(l)], "box": [round(float(v), 2) for v in b]}
                     for b, l in zip(test_set.boxes[index], test_set.labels[index])]}


def _hardest_misses(predictions: list[Any], test_set: Any) -> list[dict[str, Any]]:
    """The test images with the lowest recall at IoU 0.5 of the detections ``predict`` keeps (then the largest
    missed box): their boxes as in ``examples.json``, the missed true boxes, recall and false detections."""
    from transferkit.evaluation.detection_metrics import hardest_misses
    from transferkit.models.detector import PREDICT_SCORE

    rows = hardest_misses(predictions, test_set.targets(), count=EXAMPLES, score_threshold=PREDICT_SCORE)
    out = []
    for row in rows:
        record = _boxes_record(test_set, row["index"], predictions[row["index"]])
        out.append({**record, "recall": round(row["recall"], 4), "false_detections": row["false_detections"],
                    "largest_missed_area": round(row["largest_missed_area"], 1),
                    "missed": [record["true"][i] for i in row["missed"]]})
    return out


def _report(result: DetectionFitResult, config: Any) -> None:
    """The HTML report of the model folder (unless ``--no-report``) and the MLflow run; each a note if it fails."""
    if result.output is None:
        return
    from transferkit.reporting.tracking import report_and_track

    metrics = {"test": result.metrics, "baselines": result.baselines,
               "comparisons": [c.to_dict() for c in result.comparisons], "training": result.training}
    report_and_track(result.output, params=result.config, metrics=metrics, tracking_uri=config.tracking_uri,
                     report=config.report, run_name=f"detection {result.config['backbone']}")


def _draw_examples(folder: Path, examples: list[dict[str, Any]]) -> None:
    """``FOLDER/<image>.png``: each example image with its true boxes (green), the predictions scoring at least
    the predict default (red) and, for the hardest misses, the true boxes no detection found (magenta)."""
    from transferkit.models.detector import PREDICT_SCORE
    from transferkit.reporting.detection import draw_boxes

    for example in examples:
        predicted = [p for p in example["predicted"] if p["score"] >= PREDICT_SCORE]
        draw_boxes(example["image"], folder / f"{Path(example['image']).stem}.png", predicted, example["true"],
                   missed=example.get("missed", ()))
