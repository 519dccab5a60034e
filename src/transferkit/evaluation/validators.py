"""Label-free validators: scores of a domain-adapted model that need no target labels (higher is better).

Used by ``adapt`` to choose the method, its trade-off weight and the checkpoint. Each validator reads a
:class:`ValidationData` (what the candidate model predicts) and returns one float.

| name | needs | paper |
|---|---|---|
| ``dev`` | source validation predictions, labels and importance weights | You et al. 2019 (DEV) |
| ``snd`` | target predictions | Saito et al. 2021 (SND) |
| ``im`` | target predictions | information maximisation (Gomes et al. 2010; Liang et al. 2020, SHOT) |
| ``im-cal`` | target predictions, source validation predictions and labels | ``im`` after temperature scaling fitted on the source validation data (Guo et al. 2017) |
| ``entropy`` | target predictions | Grandvalet and Bengio 2005; Morerio et al. 2018 |
| ``ensv`` | every candidate's target predictions (scores a candidate against the pool) | Hu et al. 2024 (EnsV) |

``ensv`` is a pool validator (:data:`POOL_VALIDATORS`): it needs the finished candidates, so it chooses among them,
and each trained candidate's checkpoint is chosen by :data:`POOL_CHECKPOINT_VALIDATOR`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from transferkit._registry import Registry
from transferkit.errors import ConfigError

#: Target rows used by SND (an N x N similarity; a seeded subset beyond this).
SND_MAX_ROWS = 2000
_EPS = 1e-12


@dataclass
class ValidationData:
    """What a candidate model predicts. ``target_proba`` ``(M, C)`` on the unlabelled target data;
    ``source_val_proba`` ``(V, C)`` with ``source_val_labels`` ``(V,)`` on held-out labelled source data, and
    ``source_val_weights`` ``(V,)`` their importance weights ``p_target(x) / p_source(x)`` (for DEV);
    ``target_prior`` ``(C,)`` the target's class mix when it is known (``im`` and ``im-cal`` measure balance
    against it)."""

    target_proba: np.ndarray
    source_val_proba: np.ndarray | None = None
    source_val_labels: np.ndarray | None = None
    source_val_weights: np.ndarray | None = None
    target_prior: np.ndarray | None = None


def _entropies(proba: np.ndarray) -> np.ndarray:
    proba = np.clip(np.asarray(proba, dtype=np.float64), _EPS, 1.0)
    return -(proba * np.log(proba)).sum(axis=1)


def entropy_score(data: ValidationData) -> float:
    """``-mean_i H(p_i)`` over the target predictions (nats): confident predictions score higher. Blind to a
    model that confidently predicts one class for everything; prefer ``im`` or ``snd``."""
    return float(-_entropies(data.target_proba).mean())


def information_maximization_score(data: ValidationData) -> float:
    """``H(mean_i p_i) - mean_i H(p_i)``: the mutual information between inputs and predicted classes.

    High when each prediction is confident (low mean entropy) and the classes are used evenly (high entropy of
    the marginal), so it does not reward collapsing onto one class. In ``[0, log C]``.

    With a known target class mix ``pi`` (``data.target_prior``) the balance term measures the distance to ``pi``
    instead of to uniform: ``H(pi) - KL(mean_i p_i || pi) - mean_i H(p_i)``, which is the plain score when ``pi``
    is uniform (``H(m) = log C - KL(m || uniform)``) and is highest for confident predictions in that mix.
    """
    proba = np.asarray(data.target_proba, dtype=np.float64)
    marginal = proba.mean(axis=0, keepdims=True)
    if data.target_prior is None:
        return float(_entropies(marginal)[0] - _entropies(proba).mean())
    prior = np.asarray(data.target_prior, dtype=np.float64)
    divergence = float((marginal[0] * (_log(marginal[0]) - _log(prior))).sum())
    return float(_entropies(prior[None])[0] - divergence - _entropies(proba).mean())


def calibrated_im_score(data: ValidationData) -> float:
    """``im`` of the target predictions after temperature scaling fitted on the held-out source data.

    ``im`` rewards confidence, and candidates of different kinds are confident in different amounts for reasons
    unrelated to how right they are (a head trained to minimise class confusion or entropy is sharper than a
    strongly regularised linear probe). One temperature ``T`` per candidate, chosen to minimise the negative
    log-likelihood of its *source* validation predictions, puts every candidate on the scale where its
    confidence matches its accuracy on labelled data; then ``im`` compares them:

        T = argmin_T  -mean_v log softmax(log q_v / T)[y_v],   score = im(softmax(log p_i / T))

    with ``q_v`` the source validation and ``p_i`` the target predictions. Needs no target labels.
    """
    from transferkit.evaluation.calibration import TemperatureScaling

    if data.source_val_proba is None or data.source_val_labels is None:
        raise ConfigError("the im-cal validator needs held-out source predictions and labels.")
    scaler = TemperatureScaling().fit(_log(data.source_val_proba), data.source_val_labels)
    return information_maximization_score(ValidationData(scaler.predict_proba(_log(data.target_proba)),
                                                         target_prior=data.target_prior))


def _log(proba: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(proba, dtype=np.float64), _EPS, 1.0))


def snd_score(data: ValidationData, temperature: float = 0.05, seed: int = 0) -> float:
    """Soft neighbourhood density.

    Paper: K. Saito, D. Kim, P. Teterwak, S. Sclaroff, T. Darrell, K. Saenko (2021), "Tune it the Right Way:
    Unsupervised Validation of Domain Adaptation via Soft Neighborhood Density", ICCV.

    Formula, with ``q_i = p_i / ||p_i||`` the L2-normalised target predictions ``(M, C)``:

        S_ij = q_i . q_j  (i != j),   P_ij = exp(S_ij / T) / sum_{k != i} exp(S_ik / T),
        SND  = mean_i ( -sum_j P_ij log P_ij )

    High when every target example has many close neighbours in prediction space (dense, well-separated
    clusters). ``T = 0.05`` as in the paper. Computed on at most :data:`SND_MAX_ROWS` rows (a seeded subset).
    """
    proba = np.asarray(data.target_proba, dtype=np.float64)
    if len(proba) > SND_MAX_ROWS:
        proba = proba[np.random.default_rng(seed).choice(len(proba), SND_MAX_ROWS, replace=False)]
    if len(proba) < 2:
        raise ConfigError("the snd validator needs at least 2 target examples.")
    q = proba / np.maximum(np.linalg.norm(proba, axis=1, keepdims=True), _EPS)
    logits = q @ q.T / temperature
    np.fill_diagonal(logits, -np.inf)
    logits -= logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    weights /= weights.sum(axis=1, keepdims=True)
    return float(_entropies(weights).mean())


def dev_risk(losses: np.ndarray, weights: np.ndarray) -> float:
    """Deep embedded validation: the importance-weighted source validation risk with a control variate.

    Paper: K. You, X. Wang, M. Long, M. I. Jordan (2019), "Towards Accurate Model Selection in Deep Unsupervised
    Domain Adaptation", ICML.

    Formula, with per-example losses ``l_i`` on held-out source data and density ratios ``w_i``:

        L_i = w_i l_i,   eta = -Cov(L, w) / Var(w),   risk = mean(L) + eta * mean(w) - eta

    The control variate uses that ``E[w] = 1``; it lowers the variance of the weighted estimate. Lower is better.
    """
    losses, weights = np.asarray(losses, dtype=np.float64), np.asarray(weights, dtype=np.float64)
    weighted = weights * losses
    variance = weights.var(ddof=1) if len(weights) > 1 else 0.0
    eta = -np.cov(weighted, weights, ddof=1)[0, 1] / variance if variance > _EPS else 0.0
    return float(weighted.mean() + eta * weights.mean() - eta)


def dev_score(data: ValidationData) -> float:
    """``-dev_risk`` of the cross-entropy on the held-out source data (higher is better)."""
    if data.source_val_proba is None or data.source_val_labels is None or data.source_val_weights is None:
        raise ConfigError("the dev validator needs held-out source predictions, labels and importance weights.")
    proba = np.asarray(data.source_val_proba, dtype=np.float64)
    labels = np.asarray(data.source_val_labels, dtype=np.int64)
    losses = -_log(proba[np.arange(len(labels)), labels])
    return -dev_risk(losses, data.source_val_weights)


@dataclass(frozen=True)
class Validator:
    """A registry entry: a label-free score of one model (``score``) or of each candidate against the pool of
    candidates (``pool_scores``); exactly one of the two."""

    name: str
    #: One line: what it measures.
    description: str
    score: Callable[[ValidationData], float] | None = None
    pool_scores: Callable[[Sequence[np.ndarray]], np.ndarray] | None = None


def _check(entry: Validator) -> None:
    if (entry.score is None) == (entry.pool_scores is None):
        raise ValueError(f"validator '{entry.name}': give exactly one of score and pool_scores")


REGISTRY: Registry[Validator] = Registry("validator", "validator", check=_check)


def register_validator(entry: Validator) -> Validator:
    """Add ``entry`` to the registry (a name registered twice, or an entry with not exactly one score, is a
    programming error)."""
    return REGISTRY.register(entry)


def get_validator(name: str) -> Validator:
    """The entry named ``name``; a :class:`ConfigError` naming the option and the known validators otherwise."""
    return REGISTRY.get(name)


def validator_names() -> list[str]:
    """Every registered validator, in registration order."""
    return REGISTRY.names()



for _entry in (
    Validator("dev", "importance-weighted risk on the source validation data (DEV)", score=dev_score),
    Validator("snd", "soft neighbourhood density of the target predictions", score=snd_score),
    Validator("im", "information maximisation: confident and balanced target predictions",
              score=information_maximization_score),
    Validator("im-cal", "im after temperature scaling on the source validation data", score=calibrated_im_score),
    Validator("entropy", "negative entropy of the target predictions", score=entropy_score),
):
    register_validator(_entry)

#: The validators that score one model alone: name -> score.
VALIDATORS: dict[str, Callable[[ValidationData], float]] = {
    entry.name: entry.score for entry in REGISTRY.entries() if entry.score is not None}


def ensemble_agreement_scores(target_probas: Sequence[np.ndarray]) -> np.ndarray:
    """EnsV (Hu et al. 2024): each candidate's agreement with the ensemble of all candidates.

    The ensemble averages the candidates' target probabilities ``(K, M, C)``; its argmax serves as pseudo-labels,
    and a candidate scores the share of the ``M`` target examples on which its own argmax agrees ``(K,)``. The
    ensemble is at least as accurate as the worst candidate in expectation, so the choice avoids the worst case
    that confidence-based scores fall into (a candidate collapsed onto one class disagrees with the rest).
    """
    stacked = np.stack([np.asarray(p, dtype=np.float64) for p in target_probas])
    if stacked.ndim != 3 or len(stacked) < 1:
        raise ConfigError("ensv needs the target probabilities (M, C) of at least one candidate.")
    pseudo_labels = stacked.mean(axis=0).argmax(axis=1)
    return (stacked.argmax(axis=2) == pseudo_labels).mean(axis=1)


#: Validators that score each candidate against the whole pool of candidates (so they choose among finished ones).
register_validator(Validator("ensv", "agreement with the ensemble of all candidates (EnsV)",
                             pool_scores=ensemble_agreement_scores))
POOL_VALIDATORS: dict[str, Callable[[Sequence[np.ndarray]], np.ndarray]] = {
    entry.name: entry.pool_scores for entry in REGISTRY.entries() if entry.pool_scores is not None}
#: What chooses a trained candidate's checkpoint when the choice among candidates is a pool validator's.
POOL_CHECKPOINT_VALIDATOR = "im"
#: Every validator name that can choose among candidates.
ALL_VALIDATORS = (*VALIDATORS, *POOL_VALIDATORS)


def validate(name: str, data: ValidationData) -> float:
    """The score of validator ``name`` (see :data:`VALIDATORS`); higher is better."""
    if name in POOL_VALIDATORS:
        raise ConfigError(f"validator {name!r} scores a candidate against the others; it has no score for one "
                          f"model alone (adapt uses {POOL_CHECKPOINT_VALIDATOR!r} for checkpoints with it).")
    if name not in VALIDATORS:
        raise ConfigError(f"unknown validator {name!r}; choose one of {', '.join(VALIDATORS)}.")
    return VALIDATORS[name](data)
