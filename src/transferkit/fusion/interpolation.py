"""Weight interpolation between the pretrained and the fine-tuned model (WiSE-FT: Wortsman et al. 2022, "Robust
fine-tuning of zero-shot models").

``theta(alpha) = (1 - alpha) theta_pretrained + alpha theta_finetuned`` over every weight of backbone and head.
The pretrained end is the pretrained backbone with a linear probe as its head (fitted here on the training data,
its C by cross-validation there so that the validation data stays unseen by both ends; or given as a linear-probe
model folder), so that both ends are classifiers for the same classes. ``alpha`` is
swept over a grid and chosen on validation data (accuracy, then log-loss); alpha 0 is exactly the probe, alpha 1
exactly the fine-tuned model. Interpolation often keeps most of fine-tuning's gain on the training distribution
while recovering the pretrained model's robustness under distribution shift.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from transferkit.data.dataset import Dataset
from transferkit.errors import ConfigError
from transferkit.fusion._common import (as_dataset, check_same_architecture, cpu_state, load_state, members_task,
                                        predict_kwargs, score_and_loss, single_models, weighted_state)

log = logging.getLogger("transferkit")

DEFAULT_ALPHAS = tuple(round(float(a), 2) for a in np.linspace(0.0, 1.0, 11))


def interpolate_states(pretrained: dict[str, torch.Tensor], finetuned: dict[str, torch.Tensor],
                       alpha: float) -> dict[str, torch.Tensor]:
    """``(1 - alpha) * pretrained + alpha * finetuned`` tensor by tensor (exactly an end at alpha 0 or 1)."""
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"interpolation alpha must be in [0, 1]; got {alpha}.")
    return weighted_state([pretrained, finetuned], [1.0 - alpha, alpha])


@dataclass
class InterpolationResult:
    """The chosen model, its ``alpha``, and the curve: per alpha, accuracy and log-loss on each dataset."""

    model: Any
    alpha: float
    curve: list[dict[str, Any]]
    output: Path | None = None
    facts: dict[str, Any] = field(default_factory=dict)

    #: The task's measure the curve's ``<set>_<measure>`` columns hold (accuracy for classifiers).
    measure: str = "accuracy"

    def to_dict(self) -> dict[str, Any]:
        return {"method": "interpolate", "measure": self.measure, "alpha": self.alpha, "curve": self.curve,
                **self.facts}

    def summary(self) -> str:
        suffix = f"_{self.measure}"
        names = [k[: -len(suffix)] for k in self.curve[0] if k.endswith(suffix)]
        lines = ["alpha  " + "  ".join(f"{n + ' ' + self.measure:>14}" for n in names)]
        for row in self.curve:
            mark = "  <- chosen" if row["alpha"] == self.alpha else ""
            lines.append(f"{row['alpha']:5.2f}  " + "  ".join(f"{row[n + suffix]:14.4f}" for n in names) + mark)
        return "\n".join(lines)


def pretrained_endpoint(finetuned: Any, *, train: Dataset | None, val: Dataset, pretrained: Any = None,
                        batch_size: int = 64, device: str = "auto", seed: int = 0, probe_c: float | None = None,
                        cache_dir: str | None = None, progress: bool = False) -> tuple[Any, dict[str, Any]]:
    """The pretrained end of the line: ``pretrained`` (a linear-probe model folder) when given, else the pretrained
    backbone named by the fine-tuned model with a linear probe fitted on ``train`` (C chosen by cross-validation on
    ``train``; ``val`` is kept for choosing alpha)."""
    from transferkit.models.folder import backbone_options
    from transferkit.backbones import create_backbone
    from transferkit.features.cache import FeatureCache
    from transferkit.features.extract import extract_features
    from transferkit.models.model import TransferModel
    from transferkit.tasks import task_of

    if pretrained is not None:
        return single_models([pretrained], "interpolate")[0], {"pretrained": str(pretrained)}
    name = finetuned.backbone.name
    if name.startswith("random:"):
        raise ConfigError(f"interpolate: the fine-tuned model's backbone '{name}' has no pretrained weights to "
                          "interpolate towards; give the other end as --pretrained (a model folder).")
    if train is None:
        raise ConfigError("interpolate: give training data (--train) to fit the linear probe of the pretrained end, "
                          "or a linear-probe model folder as --pretrained.")
    backbone = create_backbone(name, **backbone_options(finetuned.backbone.preprocessing))
    if backbone.preprocessing != finetuned.backbone.preprocessing:
        raise ConfigError(f"interpolate: backbone '{name}' rebuilt here prepares its input differently from the "
                          "fine-tuned model; give the pretrained end as --pretrained.")
    cache = FeatureCache(cache_dir) if cache_dir else _default_cache()
    extract = dict(cache=cache, batch_size=batch_size, device=device, progress=progress)
    classes = finetuned.classes
    task = task_of(finetuned)
    # C by cross-validation on the training data: the validation data stays unseen, so that the probe's
    # validation accuracy (alpha 0) is as honest as the fine-tuned model's when alpha is chosen on it
    probe = task.new_probe(C=probe_c, seed=seed).fit(extract_features(backbone, train, **extract),
                                                     task.targets(train, classes))
    if len(getattr(probe, "classes_", classes)) != len(classes):
        raise ConfigError(f"interpolate: the training data holds {len(probe.classes_)} of the fine-tuned model's "
                          f"{len(classes)} classes; the probe needs examples of every class.")
    model = TransferModel(backbone, probe.to_head(), classes, strategy="linear-probe", task=task.name).eval()
    return model, {"pretrained": f"{name} + {task.name} probe (C={float(np.mean(probe.C_)):g}) fitted on "
                                 f"{len(train)} examples"}


def _default_cache():
    from transferkit.features.cache import FeatureCache, default_cache_dir

    return FeatureCache(default_cache_dir())


def interpolate(finetuned: Any, val: Any, *, train: Any = None, pretrained: Any = None,
                alphas: Sequence[float] | None = None, eval_sets: dict[str, Any] | None = None,
                output: str | Path | None = None, overwrite: bool = False, batch_size: int = 64,
                device: str = "auto", seed: int = 0, probe_c: float | None = None, cache_dir: str | None = None,
                label_column: str | None = None, text_column: str | None = None, path_column: str | None = None,
                encoding: str = "utf-8",
                delimiter: str | None = None, normalize_labels: bool = False, progress: bool = False) -> InterpolationResult:
    """Sweep ``alpha`` between the pretrained end and ``finetuned`` (a model folder or model), choose it on ``val``.

    ``eval_sets`` (name -> data) are evaluated at every alpha too (for example a shifted test domain); they never
    influence the choice. With ``output``, the chosen model is saved there with ``interpolation.json`` (the curve)
    and ``interpolation.png`` (accuracy against alpha).
    """
    from transferkit.models.folder import check_output_folder

    if output is not None:
        check_output_folder(output, overwrite, inputs=[
            ("fine-tuned model", finetuned), ("validation data", val), ("training data", train),
            ("pretrained model", pretrained), *[(f"{name} data", d) for name, d in (eval_sets or {}).items()]])
    alphas = sorted({float(a) for a in (alphas if alphas is not None else DEFAULT_ALPHAS)})
    if not alphas or any(not 0.0 <= a <= 1.0 for a in alphas):
        raise ConfigError(f"--alphas (interpolate): every mixing weight must be in [0, 1]; got {alphas}. "
                          "Give e.g. --alphas 0,0.25,0.5,0.75,1.")
    columns = dict(label_column=label_column, text_column=text_column, path_column=path_column, encoding=encoding,
                   delimiter=delimiter, normalize_labels=normalize_labels)
    finetuned_model = single_models([finetuned], "interpolate")[0]
    task = members_task([finetuned_model], [str(finetuned)], "interpolate")
    val_ds = as_dataset(val, "validation", task=task, **columns)
    train_ds = as_dataset(train, "training", task=task, **columns, required=False)
    sets = {"val": val_ds,
            **{name: as_dataset(d, name, task=task, **columns) for name, d in (eval_sets or {}).items()}}
    start_model, facts = pretrained_endpoint(finetuned_model, train=train_ds, val=val_ds, pretrained=pretrained,
                                             batch_size=batch_size, device=device, seed=seed, probe_c=probe_c,
                                             cache_dir=cache_dir, progress=progress)
    members_task([finetuned_model, start_model], ["the fine-tuned model", "the pretrained end"], "interpolate")
    check_same_architecture([finetuned_model, start_model], ["the fine-tuned model", "the pretrained end"],
                            "interpolate")
    theta_pre, theta_ft = cpu_state(start_model), cpu_state(finetuned_model)
    labels = {name: task.targets(d, finetuned_model.classes) for name, d in sets.items()}
    working = copy.deepcopy(finetuned_model)  # the caller's model keeps its weights
    curve = []
    kwargs = predict_kwargs(batch_size, device, progress)
    for alpha in alphas:
        load_state(working, interpolate_states(theta_pre, theta_ft, alpha))
        row: dict[str, Any] = {"alpha": alpha}
        for name, dataset in sets.items():
            score, loss = score_and_loss(task, working.predict_proba(dataset, **kwargs), labels[name])
            row[f"{name}_{task.measure}"], row[f"{name}_{task.output_loss_name}"] = score, loss
        curve.append(row)
        log.info("interpolate: alpha %.2f  val %s %.4f", alpha, task.measure, row[f"val_{task.measure}"])
    best = max(curve, key=lambda r: (r[f"val_{task.measure}"], -r[f"val_{task.output_loss_name}"]))
    load_state(working, interpolate_states(theta_pre, theta_ft, best["alpha"]))
    working.strategy = "interpolated"
    working.interval = None  # the fine-tuned model's prediction interval was calibrated for its own weights
    facts.update(finetuned=str(finetuned) if isinstance(finetuned, (str, Path)) else "model",
                 alphas=alphas, chosen_on=f"validation {task.measure}, then {task.output_loss_name}")
    result = InterpolationResult(working, best["alpha"], curve, facts=facts, measure=task.measure)
    if output is not None:
        from transferkit.models.artifacts import save_model

        metrics = {"fusion": result.to_dict(),
                   "validation": {task.measure: best[f"val_{task.measure}"],
                                  task.output_loss_name: best[f"val_{task.output_loss_name}"]}}
        result.output = save_model(working, output, metrics=metrics, run_config=result.to_dict(), overwrite=overwrite,
                                   include_backbone=True, keep_beside=True,
                                   extra_files={"interpolation.json": json.dumps(result.to_dict(), indent=2) + "\n",
                                                "summary.txt": result.summary() + "\n"})
        from transferkit.models.folder import late_step, update_model_folder

        notes: list[str] = []
        late_step("the interpolation plot", lambda: plot_curve(curve, best["alpha"],
                                                               Path(result.output) / "interpolation.png",
                                                               measure=task.measure), notes)
        if notes:
            update_model_folder(result.output, metrics={**metrics, "notes": notes},
                                files={"summary.txt": result.summary() + "\n" + "".join(f"note: {n}\n" for n in notes)})
    return result


def plot_curve(curve: list[dict[str, Any]], chosen: float, path: Path, measure: str = "accuracy") -> Path:
    """The task's measure (accuracy) against alpha, one line per dataset, the chosen alpha marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    alphas = [r["alpha"] for r in curve]
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    for key in [k for k in curve[0] if k.endswith(f"_{measure}")]:
        ax.plot(alphas, [r[key] for r in curve], marker="o", label=key[: -len(f"_{measure}")])
    ax.axvline(chosen, color="grey", linestyle="--", linewidth=1, label=f"chosen alpha {chosen:g}")
    ax.set_xlabel("alpha (0 = pretrained + probe, 1 = fine-tuned)")
    ax.set_ylabel(measure)
    ax.set_title("weight interpolation")
    ax.legend(fontsize=8)
    fig.tight_layout()
    from transferkit._io import save_figure

    save_figure(fig, path)
    plt.close(fig)
    return path
