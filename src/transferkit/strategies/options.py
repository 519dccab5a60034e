"""One config per training strategy: typed fields with a help text each, validated at construction.

They are light (pydantic only), so :class:`~transferkit.config.FitConfig` nests them (``finetune``, ``lora``,
``l2sp``), the CLI fills them from flags (``--freeze``, ``--lora-rank``, ...) and a YAML file from mappings
(``lora: {rank: 4}``). Saved with every model in ``run_config.yaml``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

#: Options only the strategies that train a network use (the linear probe trains none).
TRAINING_OPTIONS = ("epochs", "lr", "head_lr", "weight_decay", "warmup", "accumulate", "precision", "patience",
                    "val_fraction", "augment", "auto_augment", "mixup", "cutmix", "resume", "work_dir", "devices",
                    "num_nodes", "distributed", "deterministic", "activation_checkpointing", "init_from")


class FineTuneConfig(BaseModel):
    """Full or partial fine-tuning (also the second stage of LP-FT, and the base of L2-SP)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    freeze: int = Field(0, ge=0, description="layer groups frozen for the whole run, counted from the input (the "
                                             "backbone's layer_groups(): stem, stages, ...); 0 trains them all")
    layer_lr_decay: float = Field(1.0, gt=0, le=1, description="per-layer learning-rate decay: the top layer group "
                                  "trains at lr * decay, the next at lr * decay^2, ... (the head at lr); 1 = off")
    unfreeze_every: int = Field(0, ge=0, description="gradual unfreezing: start with the backbone frozen and unfreeze "
                                "one more layer group, from the top, every N epochs (0 = off)")
    bn_statistics: Literal["auto", "update", "frozen"] = Field(
        "auto", description="BatchNorm running statistics while training: update (batch statistics, the usual), "
        "frozen (the pretrained statistics, layers in eval mode; their weights still train), auto = frozen for lp-ft "
        "(its probe was fitted on features made with the pretrained statistics) and for a pretrained backbone on up "
        "to 10,000 training examples, update otherwise")
    keep_probe: bool = Field(True, description="lp-ft: when no fine-tuning epoch beats the probe's accuracy on the "
                             "validation data, the result is the probe itself (pretrained backbone, probe head)")


class LoraConfig(BaseModel):
    """Low-rank adapters (PEFT's LoRA) on the backbone; the head trains fully. Merged into the weights for export."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    rank: int = Field(8, gt=0, description="rank r of each adapter (W + B A with A: r x in, B: out x r)")
    alpha: float = Field(16.0, gt=0, description="scaling: the update B A is multiplied by alpha / rank")
    dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the adapters' input")
    targets: list[str] | None = Field(None, description="names (or name suffixes) of the layers to adapt; default: the "
                                      "attention query and value projections of a transformer, the linear and "
                                      "pointwise-convolution layers of a CNN")


class L2SPConfig(BaseModel):
    """Fine-tuning held near the pretrained weights (L2-SP, Li et al. 2018)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    alpha: float = Field(0.1, ge=0, description="strength of alpha/2 * ||w - w_pretrained||^2 over the backbone")
    beta: float = Field(0.01, ge=0, description="strength of beta/2 * ||w||^2 over the new head")


class ContrastiveConfig(BaseModel):
    """Contrastive fine-tuning: the top layers learn to put same-class examples close and others far (every pair of
    a batch), then the head is fitted as the linear probe on the tuned embeddings."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    loss: Literal["supcon", "cosent"] = Field("supcon", description="pair loss over every pair of a batch: supcon "
                                              "(supervised contrastive, Khosla et al. 2020) or cosent (each "
                                              "same-class pair ranked above each different-class pair)")
    temperature: float = Field(0.1, gt=0, description="supcon: temperature of the cosine similarities (lower: "
                               "sharper); cosent uses its scale of 20")
    top_layers: int = Field(0, ge=0, description="layer groups trained, counted from the top (the output side); "
                            "the lower ones stay frozen, which makes a step cheaper; 0 (the default) trains every "
                            "layer group, which measured best with a text encoder at 8 examples per class")


class DistillOptions(BaseModel):
    """The loss of ``distill``: temperature, the soft/hard weighting, optional feature matching."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    temperature: float = Field(4.0, gt=0, description="softmax temperature T of the soft targets (1 = the "
                               "teachers' probabilities as they are); the soft term is scaled by T^2")
    alpha: float = Field(0.9, ge=0, le=1, description="weight of the soft-target term on labelled examples; 1 - alpha "
                         "goes to the cross-entropy on the labels (unlabelled examples have the soft term only)")
    feature_weight: float = Field(0.0, ge=0, description="weight of FitNets feature matching between the student's "
                                  "pooled features and the teachers' through a learnable projection (0 = off)")
    cache_teacher: bool = Field(True, description="compute the teachers' outputs once and keep them in the feature "
                                "cache (ignored when the teachers must see the student's augmented inputs)")
    mixup: float = Field(0.0, ge=0, description="mixup alpha of the training batches, the teachers running live on the "
                         "mixed images (function matching); images, teachers with the student's preprocessing; 0 = off")
    variants: int = Field(0, ge=0, le=32, description="text: word-dropout copies of each labelled text (besides the "
                          "text itself) whose teacher outputs are cached; the student reads one of them, drawn at "
                          "random, each time it meets the example. Augmentation any teacher can follow (the words are "
                          "dropped before either tokenizer runs); 0 = off")
    word_dropout: float = Field(0.1, gt=0, lt=1, description="text variants: probability that each word is dropped")
