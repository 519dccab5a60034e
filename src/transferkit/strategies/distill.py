"""``distill``: train a student from one or several saved teachers (knowledge distillation).

The student is a backbone + a new head, trained by the shared engine like ``finetune`` (the same freezing and
per-layer learning-rate options); only the loss differs. For a training example ``i`` with student logits ``s_i``,
teacher logits ``t_i`` (for an ensemble: see below), temperature ``T`` and soft-target weight ``alpha``:

    soft_i = T^2 * KL(softmax(t_i / T) || softmax(s_i / T))                (Hinton, Vinyals and Dean 2015)
    L_i    = alpha * soft_i + (1 - alpha) * CE(s_i, y_i)                   labelled example
    L_i    = soft_i                                                        unlabelled example (no y_i)
    loss   = mean_i L_i  (+ feature_weight * FitNets feature matching, optional)

(the classification form; regression and multi-label models are distilled by their task's form,
:meth:`~transferkit.tasks.base.Task.distillation_terms`: the student's value matches the teachers' mean value by
squared error on the standardised target, or its per-label tempered sigmoids the teachers' by binary KL, mixed with
the task's own loss on the true targets), so a batch of labelled examples gives exactly :class:`~transferkit.losses.distillation.DistillationLoss`, and
unlabelled examples (data from where the model will be used) add soft-target terms only. The engine receives the
two parts as the named terms ``soft_targets`` and ``cross_entropy`` (``feature_matching`` when on).

Ensembles: the soft targets are the teachers' averaged tempered probabilities, ``q_i = 1/K sum_k
softmax(t_ik / T)``; they enter the formula as the logits ``T log q_i`` (whose tempered softmax is ``q_i``).

A teacher's logits are divided by its saved temperature (``fit --calibrate``: temperature scaling on held-out
logits), so that at ``T = 1`` the soft targets are the teacher's calibrated probabilities and ``T`` softens from
there. This matters for linear-probe teachers: a strongly regularised probe (``C = 1e-4``) can be right 87 % of the
time with a mean top probability of 0.62; uncalibrated, its tempered targets at ``T = 4`` are nearly uniform and the
soft term teaches next to nothing (its value stayed near 0.02 through training).

Teachers are frozen. Their logits (and pooled features, for feature matching) are computed once, in inference
mode, for every training example through each teacher's own preprocessing, and kept in the feature cache (keyed by
the teachers' weights and the examples' content), so a second run on the same data runs no teacher at all. Only when
the student's inputs are augmented *and* the teachers take the same preprocessing as the student do the teachers
run on every augmented batch instead (they must see what the student sees). With augmentation and a different
preprocessing, the teachers see the un-augmented example (recorded in the run's facts).

Mixup with live teachers (``mixup > 0``; "function matching", Beyer et al. 2022): each training batch is mixed,
``x~ = lam x_i + (1 - lam) x_j`` with ``lam ~ Beta(mixup, mixup)`` and ``j`` a permutation of the batch, and the
teachers run on ``x~`` too, so the soft targets belong to the mixed input (with cached outputs they could not: the
teacher never saw it). The cross-entropy term becomes ``lam CE(s~, y_i) + (1 - lam) CE(s~, y_j)`` on pairs whose
two examples are labelled; other pairs have the soft term only. It needs image teachers with the student's
preprocessing.

Text variants (``variants = M > 0``): the teachers cannot follow the student's token masking when they take another
tokenizer, so augmentation moves before tokenisation: each labelled text gets ``M`` copies with words dropped
(probability ``word_dropout`` each, at least one word kept, seeded per example and copy), the teachers' outputs on
all ``M + 1`` versions are computed once and cached, and each time the student meets the example it reads one
version drawn at random, with the teachers' outputs for exactly that version. An epoch is still one pass over the
examples.

Feature matching (Romero et al. 2015, FitNets): :class:`~transferkit.losses.distillation.FeatureMatchingLoss`
between the student's pooled features and the teachers' (concatenated for an ensemble) through a learnable linear
projection, on targets standardised per dimension with the teachers' statistics on the training examples (so
``feature_weight`` 1 weighs the term like the cross-entropy for any teacher); the projection trains with the
head's learning rate and is dropped after training.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset as TorchDataset

from transferkit.data.dataset import Dataset
from transferkit.engine.plan import ParamGroup
from transferkit.errors import ConfigError
from transferkit.losses.distillation import (  # noqa: F401  (UNLABELLED and ensemble_soft_logits re-exported)
    UNLABELLED, classification_distillation_terms, ensemble_soft_logits)
from transferkit.modalities import get_modality
from transferkit.strategies.finetune import FineTune
from transferkit.strategies.options import DistillOptions, FineTuneConfig

log = logging.getLogger("transferkit")

#: A teacher whose accuracy on the labelled examples exceeds its mean top probability by more than this is
#: under-confident (a warning says to calibrate it).
UNDER_CONFIDENCE_GAP = 0.15

#: The classification form of the batch's terms (other tasks' forms: :meth:`transferkit.tasks.base.Task.distillation_terms`).
distillation_terms = classification_distillation_terms


def example_target(labels: np.ndarray, index: int, position: int) -> Any:
    """The engine's target of one distillation example: its label and its index into the teachers' cached outputs.
    Class indices travel as ``(label, position)``; values and 0/1 label rows as one float vector ``[*target,
    position]`` (positions are exact in float64)."""
    if labels.dtype == np.int64:
        return int(labels[index]), int(position)
    return np.append(np.asarray(labels[index], dtype=np.float64).reshape(-1), float(position))


def as_targets(labels: np.ndarray) -> np.ndarray:
    """Labels kept as :func:`example_target` reads them: class indices as int64, anything else as float64."""
    labels = np.asarray(labels)
    return labels.astype(np.int64) if labels.dtype.kind in "iub" else labels.astype(np.float64)


def unlabelled_targets(labels: np.ndarray, count: int) -> np.ndarray:
    """``labels`` followed by ``count`` unlabelled examples' targets: :data:`UNLABELLED` class indices, or NaN
    values / label rows."""
    labels = as_targets(labels)
    if labels.dtype == np.int64:
        return np.concatenate([labels, np.full(count, UNLABELLED, np.int64)])
    return np.concatenate([labels, np.full((count, *labels.shape[1:]), np.nan)])


def _labelled(targets: torch.Tensor) -> torch.Tensor:
    """``(N,)`` whether each example of a batch's targets ``(N, k)`` has a label."""
    if targets.dtype.is_floating_point:
        return ~torch.isnan(targets).any(dim=1)
    return (targets != UNLABELLED).all(dim=1)


def _unlabel(targets: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``targets`` ``(N, k)`` with the examples where ``keep`` is false marked unlabelled."""
    mark = torch.full_like(targets, float("nan") if targets.dtype.is_floating_point else UNLABELLED)
    return torch.where(keep[:, None], targets, mark)


class DistillExamples(TorchDataset):
    """``(prepare(items[i]), target)``: the example's index travels with its label (:func:`example_target`), so
    that the plan finds the teachers' cached outputs for it. Unlabelled examples carry :data:`UNLABELLED` (NaN for
    values and label rows)."""

    def __init__(self, items: Sequence[Any] | np.ndarray, labels: np.ndarray, prepare: Any) -> None:
        if len(items) != len(labels):
            raise ValueError(f"{len(items)} items but {len(labels)} labels")
        self.items, self.labels, self.prepare = items, as_targets(labels), prepare

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        return self.prepare(self.items[index]), example_target(self.labels, index, index)


class VersionedExamples(TorchDataset):
    """Text variants: ``len`` is the number of examples; example ``i < n_labelled`` reads version ``v`` (drawn at
    random each time) of its ``versions`` stored at ``i * versions + v``, and carries that position as its index
    into the teachers' cached outputs. Unlabelled examples follow the versions, one each."""

    def __init__(self, items: Sequence[Any], labels: np.ndarray, prepare: Any, versions: int, n_labelled: int) -> None:
        if len(items) != n_labelled * versions + (len(labels) - n_labelled):
            raise ValueError(f"{len(items)} items for {n_labelled} labelled examples x {versions} versions and "
                             f"{len(labels) - n_labelled} unlabelled")
        self.items, self.labels, self.prepare = items, as_targets(labels), prepare
        self.versions, self.n_labelled = versions, n_labelled

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        if index < self.n_labelled:
            position = index * self.versions + int(torch.randint(self.versions, ()))
        else:
            position = self.n_labelled * self.versions + index - self.n_labelled
        return self.prepare(self.items[position]), example_target(self.labels, index, position)


def text_versions(texts: Sequence[str], copies: int, dropout: float, seed: int) -> list[str]:
    """Each text followed by ``copies`` versions of it with each word dropped with probability ``dropout`` (at
    least one word kept); the same texts, seed and settings give the same versions."""
    out = []
    for index, text in enumerate(texts):
        words = str(text).split()
        out.append(text)
        for copy in range(copies):
            rng = np.random.default_rng([seed, index, copy])
            keep = rng.random(len(words)) >= dropout
            if words and not keep.any():
                keep[rng.integers(len(words))] = True
            out.append(" ".join(w for w, k in zip(words, keep) if k))
    return out


def _with_items(dataset: Dataset, items: list[str]) -> Dataset:
    """``dataset``'s versions as a dataset of their own (one row per version; no labels: the teachers' inputs)."""
    versions = len(items) // max(1, len(dataset))
    return Dataset(dataset.modality, items, None, f"{dataset.origin} (word-dropout versions)",
                   [f"{r}#v{v}" for r in dataset.row_ids for v in range(versions)])


def _all_items(train: Dataset, unlabelled: Dataset | None) -> Sequence[Any] | np.ndarray:
    """The items of ``train`` followed by those of ``unlabelled`` (one array when both are arrays of one shape)."""
    if unlabelled is None or len(unlabelled) == 0:
        return train.items
    if isinstance(train.items, np.ndarray) and isinstance(unlabelled.items, np.ndarray) \
            and train.items.shape[1:] == unlabelled.items.shape[1:]:
        return np.concatenate([train.items, unlabelled.items])
    return [*list(train.items), *list(unlabelled.items)]


def _join(labelled: Dataset, unlabelled: Dataset | None) -> Dataset:
    if unlabelled is None or len(unlabelled) == 0:
        return labelled
    keys = None
    if labelled._keys is not None and unlabelled._keys is not None:
        keys = [*labelled._keys, *unlabelled._keys]
    return Dataset(labelled.modality, _all_items(labelled, unlabelled), None,
                   f"{labelled.origin} + {unlabelled.origin}", [*labelled.row_ids, *unlabelled.row_ids], _keys=keys)


class Distill(FineTune):
    """:class:`FineTune` of a student whose loss is the distillation loss of the module docstring.

    ``teachers`` are loaded :class:`~transferkit.models.model.TransferModel` objects whose classes are those of the
    training data (in any order); ``unlabelled`` adds examples for the soft-target term.
    """

    name = "distill"
    default_lr = 1e-4

    def __init__(self, teachers: Sequence[nn.Module], options: DistillOptions | None = None, *,
                 finetune: FineTuneConfig | None = None, head_lr: float | None = None,
                 unlabelled: Dataset | None = None, cache_dir: str | None = None, batch_size: int = 64,
                 device: str = "auto", live_teachers: bool | None = None) -> None:
        super().__init__(finetune, head_lr=head_lr)
        if not teachers:
            raise ConfigError("distill: give at least one teacher model (--teacher MODEL_DIR).")
        self.teachers = list(teachers)
        self.options = options or DistillOptions()
        self.unlabelled = unlabelled
        self.cache_dir = cache_dir
        self.batch_size = batch_size
        self.device = device
        self.live_teachers = live_teachers
        self.projection: nn.Module | None = None
        self._logits: torch.Tensor | None = None      # (K, N, C) in the student's class order
        self._features: torch.Tensor | None = None    # (N, sum of teacher widths)
        self._class_order: list[torch.Tensor] = []
        self._versions = 1                            # text variants: versions per labelled example
        self._version_items: list[str] = []
        self.facts_: dict[str, Any] = {}

    # --- before training ------------------------------------------------------------------------------------
    def _check_classes(self, classes: Sequence[str]) -> None:
        self._class_order = []
        for index, teacher in enumerate(self.teachers):
            missing = sorted(set(classes) - set(teacher.classes))
            if missing:
                raise ConfigError(f"distill: teacher {index + 1} ({teacher.backbone.name}) does not know the classes "
                                  f"{missing[:5]} of the training data (it knows {teacher.classes[:10]}); use a "
                                  "teacher trained on the same classes.")
            self._class_order.append(torch.tensor([teacher.classes.index(c) for c in classes], dtype=torch.int64))

    def _check_confidence(self, logits: torch.Tensor, y: torch.Tensor) -> None:
        """Warn about an under-confident teacher: one whose mean top probability on the labelled examples is far
        below its accuracy there. Its soft targets are then close to uniform and teach little; calibrating it
        (``fit --calibrate``) fixes that (see the module docstring)."""
        confidence = []
        for index, (teacher, teacher_logits) in enumerate(zip(self.teachers, logits)):
            probs = torch.softmax(teacher_logits.float(), dim=-1)
            accuracy = float((probs.argmax(1) == y).float().mean())
            mean_top = float(probs.max(1).values.mean())
            confidence.append({"accuracy": accuracy, "mean_top_probability": mean_top})
            if accuracy - mean_top > UNDER_CONFIDENCE_GAP:
                warnings.warn(f"distill: teacher {index + 1} ({teacher.backbone.name}) is under-confident: right on "
                              f"{accuracy:.0%} of the labelled examples with a mean top probability of {mean_top:.2f}"
                              f" (temperature {teacher.temperature:g}); its soft targets are close to uniform. "
                              "Calibrate it first: transferkit fit ... --calibrate.", stacklevel=3)
        self.facts_["teacher_confidence"] = confidence

    def _teacher_outputs(self, dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Teachers' logits ``(K, N, C)`` (student class order) and pooled features ``(N, D)`` (when matching),
        through the feature cache."""
        from transferkit.features.cache import FeatureCache
        from transferkit.features.extract import run_backbone

        want_features = self.options.feature_weight > 0
        logits, features = [], []
        for teacher, order in zip(self.teachers, self._class_order):
            width = teacher.backbone.num_features
            head = teacher.head.eval()

            def output(backbone, batch, head=head):
                pooled = backbone.forward_features(batch)
                return torch.cat([pooled, head.to(pooled.device)(pooled)], dim=1)

            cache = None
            if self.options.cache_teacher:
                from transferkit.features.cache import default_cache_dir

                cache = FeatureCache(self.cache_dir or default_cache_dir())
            if cache is not None:
                digest = hashlib.blake2b(digest_size=16)
                digest.update(teacher.backbone.cache_key().encode())
                for key, tensor in sorted(head.state_dict().items()):
                    digest.update(key.encode())
                    digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
                key = f"teacher-{digest.hexdigest()}"
                values, hits = cache.lookup(key, dataset.item_keys())
                if not hits.all():
                    missing = np.flatnonzero(~hits)
                    computed = run_backbone(teacher.backbone, dataset.subset(missing), batch_size=self.batch_size,
                                            device=self.device, progress=False, output=output,
                                            description="teacher outputs")
                    cache.store(key, [dataset.item_keys()[i] for i in missing], computed,
                                meta={"teacher": teacher.backbone.describe(), "classes": teacher.classes})
                    if values is None:
                        values = np.zeros((len(dataset), computed.shape[1]), np.float32)
                    values[missing] = computed
                self.facts_.setdefault("teacher_outputs_from_cache", []).append(int(hits.sum()))
            else:
                values = run_backbone(teacher.backbone, dataset, batch_size=self.batch_size, device=self.device,
                                      progress=False, output=output, description="teacher outputs")
            values = torch.from_numpy(np.ascontiguousarray(values))
            logits.append(values[:, width:][:, order] / teacher.temperature)
            features.append(values[:, :width])
        return torch.stack(logits), (torch.cat(features, dim=1) if want_features else None)

    def uses_live_teachers(self, student_preprocessing: dict[str, Any], augmented: bool) -> bool:
        """Whether the teachers run on every (augmented) batch instead of once on the clean examples."""
        if self.live_teachers is not None:
            return self.live_teachers
        same = all(t.backbone.preprocessing == student_preprocessing for t in self.teachers)
        return (augmented or self.options.mixup > 0) and same

    def check_options(self, student: nn.Module, augmented: bool) -> None:
        """Options the student's input cannot follow, refused before any work: mixup needs image teachers that run
        on the mixed batch (the student's preprocessing); text variants need texts and teachers that do not see the
        student's own augmented input."""
        if self.options.mixup > 0:
            if not get_modality(student.modality).mixes_batches:
                raise ConfigError("distill: option 'distill.mixup' mixes images; for text use --augment (token "
                                  "masking) or distill.variants.")
            if not self.uses_live_teachers(student.preprocessing, True):
                raise ConfigError("distill: option 'distill.mixup' needs teachers that see the mixed images, i.e. with "
                                  "the student's preprocessing (the same image size and normalisation); give "
                                  "--image-size to both or a teacher of the same input, or leave mixup off.")
        if self.options.variants:
            if not get_modality(student.modality).word_variants:
                raise ConfigError("distill: option 'distill.variants' makes word-dropout copies of texts; for images "
                                  "use --augment (the teachers then see each augmented batch).")
            if self.uses_live_teachers(student.preprocessing, augmented):
                raise ConfigError("distill: option 'distill.variants' is for teachers with another tokenizer than "
                                  "the student's; these see the student's own augmented input, so use --augment "
                                  "alone.")

    def prepare(self, model: nn.Module, context: dict[str, Any]) -> None:
        super().prepare(model, context)
        train, classes = context["train"], context["classes"]
        self._check_classes(classes)
        augmented = bool(context.get("augmented", False))
        self.check_options(model.backbone, augmented)
        self.live_ = self.uses_live_teachers(model.backbone.preprocessing, augmented)
        self.facts_.update(teachers=[t.backbone.name for t in self.teachers], live_teachers=self.live_,
                           teacher_temperatures=[float(t.temperature) for t in self.teachers],
                           n_unlabelled=len(self.unlabelled) if self.unlabelled is not None else 0,
                           **self.options.model_dump())
        if augmented and not self.live_:
            self.facts_["teacher_inputs"] = "un-augmented examples (teacher preprocessing differs from the student's)"
            warnings.warn("distill: the student's inputs are augmented but the teachers take another preprocessing; "
                          "the teachers' outputs are computed once on the un-augmented examples.", stacklevel=2)
        for teacher in self.teachers:
            teacher.eval()
            for p in teacher.parameters():
                p.requires_grad_(False)
        self._versions = 1
        if self.options.variants:
            self._versions = self.options.variants + 1
            seed = int(getattr(context.get("config"), "seed", 0) or 0)
            train = _with_items(train, text_versions(train.items, self.options.variants, self.options.word_dropout,
                                                     seed))
        if not self.live_:
            joined = _join(train, self.unlabelled)
            self._logits, self._features = self._teacher_outputs(joined)
            self._version_items = train.items
            self._teacher_train_facts(context["train"], classes)
        if self.options.feature_weight > 0:
            from transferkit.losses.distillation import FeatureMatchingLoss

            width = sum(t.backbone.num_features for t in self.teachers)
            self.projection = FeatureMatchingLoss(model.backbone.num_features, width)
            # standardised targets: the weight means the same for every teacher (see FeatureMatchingLoss); live
            # teachers give their statistics from one pass over the clean examples
            features = self._features if not self.live_ else self._teacher_outputs(_join(train, self.unlabelled))[1]
            self.projection.set_target_statistics(features)
            model.distill_projection = self.projection  # moves and checkpoints with the model; removed after

    def _teacher_train_facts(self, train: Dataset, classes: Sequence[str]) -> None:
        """The teachers' (averaged) measure on the labelled training examples, and for class probabilities the
        under-confidence warning (:meth:`_check_confidence`)."""
        from transferkit.tasks import get_task

        task = get_task(self.task_type)
        y = task.targets(train, classes)
        originals = torch.arange(len(y)) * self._versions  # version 0 of each example: the text itself
        logits = self._logits[:, originals].float().numpy()
        proba = np.mean([task.proba_from_outputs(teacher_logits) for teacher_logits in logits], axis=0)
        scores = task.per_example_scores(y, task.predictions(proba))
        self.facts_[f"teacher_train_{task.measure}"] = float(np.mean(scores))
        if task.calibrates and (self.options.alpha > 0 or self.unlabelled is not None):  # at alpha 0 no teaching
            self._check_confidence(self._logits[:, originals], torch.from_numpy(np.asarray(y)))

    def training_examples(self, train: Dataset, labels: np.ndarray, prepare: Any) -> TorchDataset:
        """Labelled examples then the unlabelled ones, each with its index (see :class:`DistillExamples`)."""
        n_unlabelled = len(self.unlabelled) if self.unlabelled is not None else 0
        if n_unlabelled:
            labels = unlabelled_targets(labels, n_unlabelled)
        if self._versions > 1:
            items = list(self._version_items) + (list(self.unlabelled.items) if n_unlabelled else [])
            return VersionedExamples(items, labels, prepare, self._versions, len(train))
        return DistillExamples(_all_items(train, self.unlabelled), labels, prepare)

    # --- engine side ------------------------------------------------------------------------------------------
    def param_groups(self, model: nn.Module, lr: float) -> list[ParamGroup]:
        groups = super().param_groups(model, lr)
        if self.projection is not None:
            groups.append(ParamGroup("feature_projection", list(self.projection.parameters()),
                                     self.head_learning_rate(lr)))
        return groups

    def _live_outputs(self, inputs: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits, features = [], []
        with torch.no_grad():
            for teacher, order in zip(self.teachers, self._class_order):
                device = inputs.device if isinstance(inputs, torch.Tensor) else next(iter(inputs.values())).device
                if next(teacher.parameters()).device != device:
                    teacher.to(device)
                pooled = teacher.backbone.forward_features(inputs)
                logits.append(teacher.head(pooled)[:, order.to(device)] / teacher.temperature)
                features.append(pooled)
        return torch.stack(logits), (torch.cat(features, dim=1) if self.projection is not None else None)

    def loss_terms(self, model: nn.Module, inputs: Any, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        if targets.ndim != 2 or targets.shape[1] < 2:
            raise ConfigError("distill: training batches must carry (label, index) pairs; mixup and cutmix are not "
                              "supported with distillation.")
        from transferkit.tasks import get_task

        task = get_task(self.task_type)
        labels, index = targets[:, :-1], targets[:, -1].long()
        mixing = None
        if self.options.mixup > 0 and model.training and len(labels) > 1:
            lam = float(torch.distributions.Beta(self.options.mixup, self.options.mixup).sample())
            perm = torch.randperm(len(labels), device=labels.device)
            inputs = lam * inputs + (1.0 - lam) * inputs[perm]
            mixing = (lam, perm)
        if self.live_:
            teacher_logits, teacher_features = self._live_outputs(inputs)
        else:
            cpu_index = index.cpu()
            teacher_logits = self._logits[:, cpu_index].to(labels.device, non_blocking=True)
            teacher_features = None if self._features is None else \
                self._features[cpu_index].to(labels.device, non_blocking=True)
        features = model.backbone.forward_features(inputs)
        logits = model.head(features)
        options = dict(temperature=self.options.temperature, alpha=self.options.alpha, head=model.head)
        if mixing is None:
            terms = task.distillation_terms(logits, teacher_logits, labels, **options)
        else:
            lam, perm = mixing
            both = _labelled(labels) & _labelled(labels[perm])
            first = task.distillation_terms(logits, teacher_logits, _unlabel(labels, both), **options)
            second = task.distillation_terms(logits, teacher_logits, _unlabel(labels[perm], both), **options)
            terms = {"soft_targets": first["soft_targets"],
                     task.loss_name: lam * first[task.loss_name] + (1.0 - lam) * second[task.loss_name]}
        if self.projection is not None:
            terms["feature_matching"] = self.options.feature_weight * self.projection(features, teacher_features)
        return terms

    # --- after training ---------------------------------------------------------------------------------------
    def finalize(self, model: nn.Module) -> None:
        if hasattr(model, "distill_projection"):
            del model.distill_projection
        for teacher in self.teachers:
            teacher.to("cpu")
        super().finalize(model)

    def describe(self, model: nn.Module) -> dict[str, Any]:
        facts = super().describe(model)
        if hasattr(model, "distill_projection"):
            facts["trainable_parameters"] -= sum(p.numel() for p in model.distill_projection.parameters())
            facts["total_parameters"] -= sum(p.numel() for p in model.distill_projection.parameters())
        teacher_params = [sum(p.numel() for p in t.parameters()) for t in self.teachers]
        return {**facts, **self.facts_, "teacher_parameters": teacher_params}


def teacher_fingerprint(teachers: Sequence[nn.Module]) -> str:
    """A short hash naming the teachers (for run folders)."""
    text = json.dumps([t.backbone.cache_key() for t in teachers])
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()
