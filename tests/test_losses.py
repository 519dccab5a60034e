"""Losses: contract tests over the registry, then known values computed independently (numpy, loops, formulas)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from transferkit.errors import ConfigError
from transferkit.losses import (
    LOSSES,
    ConditionalAdversarialLoss,
    CoralLoss,
    DistillationLoss,
    DomainAdversarialLoss,
    EntropyLoss,
    FeatureMatchingLoss,
    GradientReversal,
    L2SPPenalty,
    MinimumClassConfusionLoss,
    MultiKernelMMD,
    CoSENTLoss,
    SupervisedContrastiveLoss,
    create_loss,
    dann_coefficient,
    reverse_gradient,
)

torch.set_num_threads(1)


def scalar(value) -> float:
    """A Python float of a tensor (detached first) or of a number."""
    return float(value.detach()) if isinstance(value, torch.Tensor) else float(value)


def randn(*shape: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator, dtype=dtype)


def discriminator(width: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(width, 16), nn.ReLU(), nn.Linear(16, 1)).double()


def small_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()


# --------------------------------------------------------------------------------------------------------------
# Contract tests over the registry
# --------------------------------------------------------------------------------------------------------------


@dataclass
class Case:
    loss: nn.Module
    args: tuple
    needs_grad: list[torch.Tensor]  # every tensor that must receive a gradient


def _leaf(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.clone().requires_grad_(True)


def _case_mmd() -> Case:
    source, target = _leaf(randn(10, 4, seed=1)), _leaf(randn(7, 4, seed=2) + 1)
    return Case(create_loss("mmd"), (source, target), [source, target])


def _case_coral() -> Case:
    source, target = _leaf(randn(10, 4, seed=1)), _leaf(2 * randn(7, 4, seed=2))
    return Case(create_loss("coral"), (source, target), [source, target])


def _case_dann() -> Case:
    source, target = _leaf(randn(10, 4, seed=1)), _leaf(randn(7, 4, seed=2) + 1)
    return Case(create_loss("dann", discriminator=discriminator(4)), (source, target), [source, target])


def _case_cdan() -> Case:
    source, target = _leaf(randn(10, 4, seed=1)), _leaf(randn(7, 4, seed=2) + 1)
    source_logits, target_logits = _leaf(randn(10, 3, seed=3)), _leaf(randn(7, 3, seed=4))
    loss = create_loss("cdan", discriminator=discriminator(12), feature_dim=4, num_classes=3,
                       entropy_conditioning=True)
    # Predictions condition the discriminator but are detached (the paper's code): only features get gradients.
    return Case(loss, (source, target, source_logits, target_logits), [source, target])


def _case_entropy() -> Case:
    logits = _leaf(randn(9, 5, seed=1))
    return Case(create_loss("entropy"), (logits,), [logits])


def _case_mcc() -> Case:
    logits = _leaf(randn(9, 5, seed=1))
    return Case(create_loss("mcc", temperature=2.0), (logits,), [logits])


def _case_distillation() -> Case:
    student, teacher = _leaf(randn(9, 5, seed=1)), randn(9, 5, seed=2)
    labels = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2, 3])
    return Case(create_loss("distillation", temperature=3.0, alpha=0.5), (student, teacher, labels), [student])


def _case_feature_matching() -> Case:
    loss = create_loss("feature-matching", student_dim=4, teacher_dim=6).double()
    student, teacher = _leaf(randn(9, 4, seed=1)), randn(9, 6, seed=2)
    return Case(loss, (student, teacher), [student, *loss.parameters()])


def _case_l2sp() -> Case:
    module = small_mlp()
    loss = create_loss("l2sp", module=module, pretrained=["0"], alpha=0.5, beta=0.1)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(0.1)
    return Case(loss, (module,), list(module.parameters()))


def _labelled_batch() -> tuple[torch.Tensor, torch.Tensor]:
    return _leaf(randn(10, 4, seed=3)), torch.tensor([0, 0, 1, 1, 1, 2, 2, 0, 3, 2])


def _case_supcon() -> Case:
    embeddings, labels = _labelled_batch()
    return Case(create_loss("supcon", temperature=0.2), (embeddings, labels), [embeddings])


def _case_cosent() -> Case:
    embeddings, labels = _labelled_batch()
    return Case(create_loss("cosent", scale=5.0), (embeddings, labels), [embeddings])


CASES: dict[str, Callable[[], Case]] = {
    "mmd": _case_mmd, "coral": _case_coral, "dann": _case_dann, "cdan": _case_cdan, "entropy": _case_entropy,
    "mcc": _case_mcc, "distillation": _case_distillation, "feature-matching": _case_feature_matching,
    "l2sp": _case_l2sp, "supcon": _case_supcon, "cosent": _case_cosent,
}


def test_every_registered_loss_has_a_contract_case():
    assert set(CASES) == set(LOSSES)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_finite_scalar_with_gradients(name):
    case = CASES[name]()
    assert isinstance(case.loss, LOSSES[name])
    value = case.loss(*case.args)
    assert isinstance(value, torch.Tensor) and value.ndim == 0
    assert torch.isfinite(value)
    value.backward()
    for tensor in case.needs_grad:
        assert tensor.grad is not None, f"{name}: no gradient reached an input"
        assert torch.isfinite(tensor.grad).all()
        assert tensor.grad.abs().sum() > 0, f"{name}: the gradient is identically zero"


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_same_value_in_train_and_eval_mode(name):
    case = CASES[name]()
    train_value = case.loss.train()(*case.args)
    eval_value = case.loss.eval()(*case.args)
    assert torch.equal(train_value, eval_value)


def test_create_loss_rejects_unknown_names_and_options():
    with pytest.raises(ConfigError, match="known losses: cdan, coral, cosent, dann") as info:
        create_loss("wasserstein")
    assert "'wasserstein'" in str(info.value)
    with pytest.raises(ConfigError, match="unknown option.*kernels.*kernel_multipliers"):
        create_loss("mmd", kernels=3)
    with pytest.raises(ConfigError, match="missing required option.*discriminator"):
        create_loss("dann")
    with pytest.raises(ConfigError, match="its options are: none"):
        create_loss("coral", temperature=2)


@pytest.mark.parametrize("name, options, expected", [
    ("mmd", {"kernel_multipliers": ()}, "kernel_multipliers"),
    ("mmd", {"kernel_multipliers": (1.0, -2.0)}, "kernel_multipliers.*-2.0"),
    ("mmd", {"bandwidth": "max"}, "bandwidth.*'median', 'mean'.*'max'"),
    ("mmd", {"bandwidth": 0.0}, "bandwidth.*> 0.*0.0"),
    ("mmd", {"unbiased": "yes"}, "unbiased.*'yes'"),
    ("mcc", {"temperature": 0}, "temperature.*> 0.*got 0"),
    ("distillation", {"temperature": -1.0}, "temperature.*got -1.0"),
    ("distillation", {"alpha": 1.5}, r"alpha.*\[0, 1\].*1.5"),
    ("distillation", {"alpha": float("nan")}, "alpha.*nan"),
    ("feature-matching", {"student_dim": 0, "teacher_dim": 4}, "student_dim.*>= 1.*got 0"),
    ("feature-matching", {"student_dim": 4, "teacher_dim": 2.5}, "teacher_dim.*2.5"),
    ("dann", {"discriminator": "mlp"}, "discriminator.*nn.Module.*str"),
    ("dann", {"discriminator": nn.Linear(2, 1), "coefficient": -1}, "coefficient.*>= 0.*-1"),
    ("cdan", {"discriminator": nn.Linear(2, 1), "feature_dim": 0, "num_classes": 3}, "feature_dim.*got 0"),
    ("cdan", {"discriminator": nn.Linear(2, 1), "feature_dim": 4, "num_classes": 3, "randomized": "auto"},
     "randomized.*'auto'"),
    ("cdan", {"discriminator": nn.Linear(2, 1), "feature_dim": 4, "num_classes": 3, "randomized_dim": -5},
     "randomized_dim.*-5"),
    ("l2sp", {"module": "resnet"}, "module.*nn.Module.*str"),
    ("l2sp", {"module": nn.Linear(2, 2), "alpha": -0.1}, "alpha.*>= 0.*-0.1"),
    ("l2sp", {"module": nn.Linear(2, 2), "pretrained": ["head"]}, "'head'.*weight, bias"),
    ("l2sp", {"module": nn.Linear(2, 2), "pretrained": "weight"}, "pretrained.*list"),
])
def test_bad_options_raise_config_error_naming_the_option(name, options, expected):
    with pytest.raises(ConfigError, match=expected) as info:
        create_loss(name, **options)
    assert isinstance(info.value, ValueError)


# --------------------------------------------------------------------------------------------------------------
# Discrepancies: MMD and CORAL
# --------------------------------------------------------------------------------------------------------------

DISCREPANCIES = {
    "mmd-biased": (lambda: MultiKernelMMD(), lambda x, s: x + s),
    "mmd-unbiased": (lambda: MultiKernelMMD(unbiased=True), lambda x, s: x + s),
    "mmd-mean-bandwidth": (lambda: MultiKernelMMD(bandwidth="mean"), lambda x, s: x + s),
    # CORAL only sees covariances: its shift is a change of scale.
    "coral": (lambda: CoralLoss(), lambda x, s: x * (1 + s)),
}


@pytest.mark.parametrize("name", sorted(DISCREPANCIES))
def test_discrepancy_is_near_zero_for_one_distribution_and_grows_with_the_shift(name):
    make, shift = DISCREPANCIES[name]
    loss = make()
    source, other_sample = randn(64, 6, seed=1), randn(48, 6, seed=2)
    assert abs(scalar(loss(source, source))) < 0.05
    same_distribution = scalar(loss(source, other_sample))
    values = [scalar(loss(source, shift(other_sample, s))) for s in (1.0, 2.0, 4.0)]
    assert abs(same_distribution) < values[0] / 2
    assert values[0] < values[1] < values[2]


def test_biased_mmd_and_coral_are_exactly_zero_on_identical_batches():
    x = randn(20, 5, seed=3)
    assert scalar(MultiKernelMMD()(x, x)) == pytest.approx(0.0, abs=1e-12)
    assert scalar(CoralLoss()(x, x)) == 0.0
    # The unbiased estimate of equal batches is slightly negative (its diagonal terms are left out).
    assert scalar(MultiKernelMMD(unbiased=True)(x, x)) < 0


def _random_rotation(width: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(randn(width, width, seed=seed))
    return q


@pytest.mark.parametrize("unbiased", [False, True])
def test_mmd_invariances(unbiased):
    loss = MultiKernelMMD(unbiased=unbiased)
    source, target = randn(12, 4, seed=1), randn(9, 4, seed=2) + 0.7
    value = loss(source, target)
    rotation, offset = _random_rotation(4, seed=5), randn(1, 4, seed=6) * 3
    # Gaussian kernels and the median bandwidth depend on distances only.
    assert torch.allclose(loss(source @ rotation + offset, target @ rotation + offset), value, atol=1e-10)
    assert torch.allclose(loss(source[torch.randperm(12)], target[torch.randperm(9)]), value, atol=1e-12)
    # With the data-driven bandwidth, scaling everything by a factor changes nothing either.
    assert torch.allclose(loss(5 * source, 5 * target), value, atol=1e-10)
    # MMD is symmetric in the two domains.
    assert torch.allclose(loss(target, source), value, atol=1e-12)


def test_coral_invariances():
    loss = CoralLoss()
    source, target = randn(12, 4, seed=1), 1.5 * randn(9, 4, seed=2)
    value = loss(source, target)
    assert torch.allclose(loss(source + 10.0, target - 3.0), value, atol=1e-10)
    assert torch.allclose(loss(source[torch.randperm(12)], target), value, atol=1e-12)
    assert torch.allclose(loss(target, source), value, atol=1e-12)


def _mmd_by_loops(x: np.ndarray, y: np.ndarray, gammas: list[float], unbiased: bool) -> float:
    def k(a, b):
        return sum(math.exp(-scalar(np.sum((a - b) ** 2)) / g) for g in gammas) / len(gammas)

    def mean_within(z):
        total, count = 0.0, 0
        for i in range(len(z)):
            for j in range(len(z)):
                if unbiased and i == j:
                    continue
                total += k(z[i], z[j])
                count += 1
        return total / count

    cross = sum(k(a, b) for a in x for b in y) / (len(x) * len(y))
    return mean_within(x) + mean_within(y) - 2 * cross


@pytest.mark.parametrize("unbiased", [False, True])
def test_mmd_with_one_fixed_kernel_matches_a_double_loop(unbiased):
    x, y = randn(7, 3, seed=1), randn(5, 3, seed=2) + 0.5
    loss = MultiKernelMMD(kernel_multipliers=(1.0,), bandwidth=2.0, unbiased=unbiased)
    expected = _mmd_by_loops(x.numpy(), y.numpy(), [2.0], unbiased)
    assert scalar(loss(x, y)) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("bandwidth", ["median", "mean"])
def test_mmd_with_data_driven_bandwidth_and_several_kernels_matches_a_double_loop(bandwidth):
    x, y = randn(6, 3, seed=3), randn(8, 3, seed=4) * 2
    pooled = np.concatenate([x.numpy(), y.numpy()])
    pairs = sorted(scalar(np.sum((pooled[i] - pooled[j]) ** 2))
                   for i in range(len(pooled)) for j in range(i + 1, len(pooled)))
    base = pairs[(len(pairs) - 1) // 2] if bandwidth == "median" else scalar(np.mean(pairs))
    multipliers = (0.5, 1.0, 4.0)
    expected = _mmd_by_loops(x.numpy(), y.numpy(), [m * base for m in multipliers], unbiased=False)
    loss = MultiKernelMMD(kernel_multipliers=multipliers, bandwidth=bandwidth)
    assert scalar(loss(x, y)) == pytest.approx(expected, rel=1e-9)


def test_coral_matches_numpy_covariances():
    x, y = randn(11, 4, seed=1), randn(6, 4, seed=2) @ randn(4, 4, seed=3)
    difference = np.cov(x.numpy(), rowvar=False) - np.cov(y.numpy(), rowvar=False)
    expected = scalar(np.sum(difference ** 2)) / (4 * 4 ** 2)
    assert scalar(CoralLoss()(x, y)) == pytest.approx(expected, rel=1e-10)


def test_discrepancies_accept_half_precision_and_report_bad_shapes():
    x, y = randn(16, 4, seed=1, dtype=torch.bfloat16), randn(12, 4, seed=2, dtype=torch.bfloat16) + 1
    for loss in (MultiKernelMMD(), CoralLoss()):
        value = loss(x, y)
        assert value.dtype == torch.float32 and torch.isfinite(value) and value > 0
        with pytest.raises(ValueError, match="same feature width"):
            loss(randn(4, 3), randn(4, 5))
        with pytest.raises(ValueError, match="2-D tensor"):
            loss(randn(4, 3, 2), randn(4, 3))
    # Under mixed precision the kernel and covariance products stay in float32.
    # (A common offset makes the |x|^2 + |y|^2 - 2 x.y distances lose everything in 16 bits.)
    x64, y64 = randn(16, 4, seed=1), 2 * randn(12, 4, seed=2) + 1
    for loss in (MultiKernelMMD(), CoralLoss()):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = loss(x64.float() + 30, y64.float() + 30)
        assert mixed.dtype == torch.float32
        assert scalar(mixed) == pytest.approx(scalar(loss(x64, y64)), rel=1e-3)
    with pytest.raises(ValueError, match="at least 2 rows"):
        CoralLoss()(randn(1, 3), randn(4, 3))
    with pytest.raises(ValueError, match="at least 2 rows"):
        MultiKernelMMD(unbiased=True)(randn(4, 3), randn(1, 3))


# --------------------------------------------------------------------------------------------------------------
# Gradient reversal, DANN, CDAN
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("coefficient", [0.0, 0.3, 2.0])
def test_gradient_reversal_is_identity_forward_and_negates_and_scales_the_gradient(coefficient):
    x = randn(4, 3, seed=1).requires_grad_(True)
    upstream = randn(4, 3, seed=2)
    layer = GradientReversal(coefficient)
    out = layer(x)
    assert torch.equal(out, x)
    out.backward(upstream)
    assert torch.allclose(x.grad, -coefficient * upstream)
    x.grad = None
    layer.coefficient = 0.5
    (reverse_gradient(x, 0.5) + layer(x)).backward(upstream)
    assert torch.allclose(x.grad, -1.0 * upstream)
    with pytest.raises(ConfigError, match="coefficient"):
        layer.coefficient = -0.1


def test_dann_coefficient_schedule():
    assert dann_coefficient(0.0) == 0.0
    assert dann_coefficient(1.0) == pytest.approx(2 / (1 + math.exp(-10)) - 1)
    assert dann_coefficient(0.5, gamma=2.0) == pytest.approx(2 / (1 + math.exp(-1)) - 1)
    values = [dann_coefficient(p) for p in np.linspace(0, 1, 11)]
    assert all(a < b for a, b in zip(values, values[1:]))
    with pytest.raises(ConfigError, match=r"progress.*\[0, 1\].*1.5"):
        dann_coefficient(1.5)
    with pytest.raises(ConfigError, match="gamma"):
        dann_coefficient(0.5, gamma=0)


def test_dann_with_an_undecided_discriminator_is_log_2_whatever_the_batch_sizes():
    undecided = nn.Linear(4, 1).double()
    nn.init.zeros_(undecided.weight)
    nn.init.zeros_(undecided.bias)
    loss = DomainAdversarialLoss(undecided)
    assert scalar(loss(randn(10, 4, seed=1), randn(3, 4, seed=2))) == pytest.approx(math.log(2))


def test_dann_value_and_reversed_gradient_match_a_plain_bce():
    disc = discriminator(4)
    loss = DomainAdversarialLoss(disc, coefficient=0.7)
    source, target = randn(6, 4, seed=1).requires_grad_(True), randn(3, 4, seed=2).requires_grad_(True)
    value = loss(source, target)
    value.backward()
    plain_source, plain_target = source.detach().clone().requires_grad_(True), \
        target.detach().clone().requires_grad_(True)
    expected = 0.5 * F.binary_cross_entropy_with_logits(disc(plain_source)[:, 0], torch.ones(6, dtype=torch.float64)) \
        + 0.5 * F.binary_cross_entropy_with_logits(disc(plain_target)[:, 0], torch.zeros(3, dtype=torch.float64))
    expected.backward()
    assert scalar(value) == pytest.approx(scalar(expected), rel=1e-12)
    assert torch.allclose(source.grad, -0.7 * plain_source.grad)
    assert torch.allclose(target.grad, -0.7 * plain_target.grad)
    # The discriminator itself is trained normally (not reversed).
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in disc.parameters())


def test_discriminator_accuracy_is_a_float_and_balanced():
    sign_of_first = nn.Linear(2, 1).double()
    with torch.no_grad():
        sign_of_first.weight.copy_(torch.tensor([[1.0, 0.0]]))
        sign_of_first.bias.zero_()
    loss = DomainAdversarialLoss(sign_of_first)
    source = torch.tensor([[1.0, 5.0], [2.0, -1.0], [3.0, 0.0]], dtype=torch.float64)
    target = -torch.tensor([[1.0, 5.0]], dtype=torch.float64)
    accuracy = loss.discriminator_accuracy(source, target)
    assert isinstance(accuracy, float) and accuracy == 1.0
    assert loss.discriminator_accuracy(target.repeat(3, 1), -target) == 0.0
    # Source all right, target all wrong: balanced accuracy 0.5 even though 3 of 4 rows are right.
    assert loss.discriminator_accuracy(source, -target) == 0.5


def test_dann_rejects_a_discriminator_with_the_wrong_output():
    loss = DomainAdversarialLoss(nn.Linear(4, 2).double())
    with pytest.raises(ValueError, match="one logit per row"):
        loss(randn(3, 4), randn(3, 4))


def test_cdan_multilinear_map_is_the_flattened_outer_product():
    loss = ConditionalAdversarialLoss(discriminator(12), feature_dim=4, num_classes=3)
    assert not loss.randomized and loss.output_dim == 12
    f, g = randn(5, 4, seed=1), randn(5, 3, seed=2).softmax(dim=1)
    expected = torch.stack([torch.outer(f[i], g[i]).reshape(-1) for i in range(5)])
    assert torch.allclose(loss.multilinear_map(f, g), expected)


def test_cdan_randomized_map_is_chosen_for_large_products_and_follows_the_formula():
    torch.manual_seed(0)
    loss = ConditionalAdversarialLoss(discriminator(64), feature_dim=100, num_classes=50, randomized_dim=64).double()
    assert loss.randomized and loss.output_dim == 64
    assert not ConditionalAdversarialLoss(nn.Linear(1, 1), feature_dim=64, num_classes=64).randomized
    forced = ConditionalAdversarialLoss(nn.Linear(1, 1), feature_dim=4, num_classes=3, randomized=True,
                                        randomized_dim=8)
    assert forced.randomized and forced.output_dim == 8
    f, g = randn(5, 100, seed=1), randn(5, 50, seed=2).softmax(dim=1)
    expected = (f @ loss.random_features) * (g @ loss.random_classes) / 8.0
    assert torch.allclose(loss.multilinear_map(f, g), expected)
    # The random matrices are part of the state, so a reloaded loss computes the same value.
    args = (f, randn(4, 100, seed=3), randn(5, 50, seed=4), randn(4, 50, seed=5))
    torch.manual_seed(1)
    reloaded = ConditionalAdversarialLoss(discriminator(64, seed=9), feature_dim=100, num_classes=50,
                                          randomized_dim=64).double()
    assert not torch.allclose(reloaded(*args), loss(*args))
    reloaded.load_state_dict(loss.state_dict())
    assert torch.allclose(reloaded(*args), loss(*args))


@pytest.mark.parametrize("entropy_conditioning", [False, True])
def test_cdan_value_matches_the_formula(entropy_conditioning):
    disc = discriminator(12)
    loss = ConditionalAdversarialLoss(disc, feature_dim=4, num_classes=3, entropy_conditioning=entropy_conditioning)
    fs, ft, ls, lt = randn(6, 4, seed=1), randn(4, 4, seed=2), 3 * randn(6, 3, seed=3), randn(4, 3, seed=4)
    value = scalar(loss(fs, ft, ls, lt))

    def domain_term(f, logits, label):
        p = logits.softmax(dim=1).numpy()
        h = np.einsum("nf,nc->nfc", f.numpy(), p).reshape(len(p), -1)
        z = disc(torch.from_numpy(h))[:, 0].detach().numpy()
        bce = np.logaddexp(0, -z) if label == 1 else np.logaddexp(0, z)
        w = 1 + np.exp(np.sum(p * np.log(p), axis=1)) if entropy_conditioning else np.ones(len(p))
        return scalar(np.sum(w * bce) / np.sum(w))

    expected = 0.5 * domain_term(fs, ls, 1) + 0.5 * domain_term(ft, lt, 0)
    assert value == pytest.approx(expected, rel=1e-10)


def test_cdan_gradients_skip_the_logits_and_shapes_are_checked():
    loss = ConditionalAdversarialLoss(discriminator(12), feature_dim=4, num_classes=3)
    logits = randn(5, 3, seed=1).requires_grad_(True)
    features = randn(5, 4, seed=2).requires_grad_(True)
    loss(features, features, logits, logits).backward()
    assert logits.grad is None and features.grad is not None
    with pytest.raises(ValueError, match="source_logits must have 3 columns"):
        loss(randn(5, 4), randn(5, 4), randn(5, 2), randn(5, 3))
    with pytest.raises(ValueError, match="same number of rows"):
        loss(randn(5, 4), randn(5, 4), randn(4, 3), randn(5, 3))
    assert isinstance(loss.discriminator_accuracy(randn(5, 4), randn(5, 4), randn(5, 3), randn(5, 3)), float)


# --------------------------------------------------------------------------------------------------------------
# Entropy and MCC
# --------------------------------------------------------------------------------------------------------------


def test_entropy_known_values_and_invariances():
    loss = EntropyLoss()
    assert scalar(loss(torch.zeros(4, 6))) == pytest.approx(math.log(6))
    assert scalar(loss(50 * torch.eye(4))) < 1e-15
    logits = randn(7, 5, seed=1)
    p = logits.softmax(dim=1).numpy()
    assert scalar(loss(logits)) == pytest.approx(scalar(-np.mean(np.sum(p * np.log(p), axis=1))), rel=1e-12)
    assert torch.allclose(loss(logits + randn(7, 1, seed=2)), loss(logits))
    assert torch.allclose(loss(logits[torch.randperm(7)]), loss(logits))
    assert torch.isfinite(loss(torch.tensor([[1000.0, 0.0, -1000.0]])))


def _mcc_reference(logits: np.ndarray, temperature: float) -> float:
    z = logits / temperature
    y = np.exp(z - z.max(axis=1, keepdims=True))
    y /= y.sum(axis=1, keepdims=True)
    h = -np.sum(y * np.log(y), axis=1)
    w = 1 + np.exp(-h)
    w = len(y) * w / w.sum()
    confusion = y.T @ np.diag(w) @ y
    confusion = confusion / confusion.sum(axis=1, keepdims=True)
    return scalar((confusion.sum() - np.trace(confusion)) / y.shape[1])


def test_mcc_known_values_and_invariances():
    loss = MinimumClassConfusionLoss(temperature=2.5)
    assert scalar(loss(40 * torch.eye(5))) < 1e-4
    assert scalar(loss(torch.zeros(8, 4))) == pytest.approx(3 / 4)
    logits = 3 * randn(10, 4, seed=1)
    assert scalar(loss(logits)) == pytest.approx(_mcc_reference(logits.numpy(), 2.5), rel=1e-10)
    assert scalar(MinimumClassConfusionLoss(1.0)(logits)) == pytest.approx(_mcc_reference(logits.numpy(), 1.0))
    assert torch.allclose(loss(logits[torch.randperm(10)]), loss(logits))
    assert torch.allclose(loss(logits[:, torch.tensor([2, 0, 3, 1])]), loss(logits))
    # A higher temperature softens the predictions, so more confusion.
    assert scalar(MinimumClassConfusionLoss(5.0)(logits)) > scalar(MinimumClassConfusionLoss(1.0)(logits))


def test_mcc_survives_a_class_nobody_predicts():
    logits = torch.tensor([[30.0, 0.0, -2000.0], [0.0, 30.0, -2000.0]])
    value = MinimumClassConfusionLoss(temperature=1.0)(logits)
    assert torch.isfinite(value) and scalar(value) < 1e-6


# --------------------------------------------------------------------------------------------------------------
# Distillation and feature matching
# --------------------------------------------------------------------------------------------------------------


def test_distillation_at_temperature_1_and_alpha_0_is_cross_entropy():
    student, teacher, labels = randn(8, 5, seed=1), randn(8, 5, seed=2), torch.tensor([0, 1, 2, 3, 4, 4, 3, 2])
    value = DistillationLoss(temperature=1.0, alpha=0.0)(student, teacher, labels)
    assert torch.allclose(value, F.cross_entropy(student, labels), atol=1e-12)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_distillation_matches_the_formula_on_fixed_logits():
    student = np.array([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]])
    teacher = np.array([[3.0, 0.0, -2.0], [-1.0, 2.0, 2.5]])
    labels = np.array([0, 2])
    temperature, alpha = 2.0, 0.3
    p_t, p_s = _softmax(teacher / temperature), _softmax(student / temperature)
    kl = scalar(np.mean(np.sum(p_t * np.log(p_t / p_s), axis=1)))
    ce = scalar(np.mean(-np.log(_softmax(student)[np.arange(2), labels])))
    loss = DistillationLoss(temperature=temperature, alpha=alpha)
    args = torch.from_numpy(student), torch.from_numpy(teacher)
    assert scalar(loss(*args, torch.from_numpy(labels))) == pytest.approx(
        alpha * temperature ** 2 * kl + (1 - alpha) * ce, rel=1e-12)
    # Without labels only the soft term remains, at full weight.
    assert scalar(loss(*args, None)) == pytest.approx(temperature ** 2 * kl, rel=1e-12)
    # A student equal to its teacher has nothing left to learn from it.
    assert scalar(loss(args[1], args[1])) == pytest.approx(0.0, abs=1e-12)


def test_distillation_trains_the_student_only_and_checks_shapes():
    student, teacher = randn(4, 3, seed=1).requires_grad_(True), randn(4, 3, seed=2).requires_grad_(True)
    loss = DistillationLoss()
    loss(student, teacher).backward()
    assert student.grad is not None and teacher.grad is None
    # Logits shifted by a constant per row give the same probabilities, so the same loss.
    value = loss(student, teacher)
    assert torch.allclose(loss(student + 4.0, teacher - randn(4, 1, seed=3)), value)
    with pytest.raises(ValueError, match="teacher_logits must have the student's shape"):
        loss(randn(4, 3), randn(4, 5))
    with pytest.raises(ValueError, match=r"labels must have shape \(4,\)"):
        loss(randn(4, 3), randn(4, 3), torch.tensor([0, 1]))


def test_feature_matching_is_the_mse_after_the_projection():
    loss = FeatureMatchingLoss(student_dim=3, teacher_dim=2).double()
    with torch.no_grad():
        loss.projection.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]))
        loss.projection.bias.copy_(torch.tensor([0.5, -1.0]))
    student = torch.tensor([[1.0, 2.0, 3.0], [0.0, -1.0, 4.0]], dtype=torch.float64)
    teacher = torch.tensor([[1.5, 3.0], [0.0, 0.0]], dtype=torch.float64)
    # projected = [[1.5, 3.0], [0.5, -3.0]]; squared errors 0, 0, 0.25, 9.
    assert scalar(loss(student, teacher)) == pytest.approx((0.25 + 9.0) / 4)
    # Token features (N, L, D) are projected on the last axis.
    tokens_s, tokens_t = randn(2, 5, 3, seed=1), randn(2, 5, 2, seed=2)
    expected = F.mse_loss(tokens_s @ loss.projection.weight.T + loss.projection.bias, tokens_t)
    assert torch.allclose(loss(tokens_s, tokens_t), expected)
    with pytest.raises(ValueError, match="same leading shape"):
        loss(randn(4, 3), randn(5, 2))
    with pytest.raises(ValueError, match=r"teacher_features \(\.\.\., 2\)"):
        loss(randn(4, 3), randn(4, 3))


def test_feature_matching_on_standardised_targets_is_scale_free():
    loss = FeatureMatchingLoss(student_dim=3, teacher_dim=2).double()
    teacher = torch.tensor([[1.0, 10.0], [3.0, 30.0], [5.0, 50.0]], dtype=torch.float64)
    loss.set_target_statistics(teacher)  # mean (3, 30), sample std (2, 20)
    student = randn(3, 3, seed=4)
    standardised = torch.tensor([[-1.0, -1.0], [0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    expected = F.mse_loss(student @ loss.projection.weight.T + loss.projection.bias, standardised)
    assert torch.allclose(loss(student, teacher), expected)
    # a teacher 1000 times smaller (a normalised embedding) gives the same value: the weight means the same
    small = FeatureMatchingLoss(student_dim=3, teacher_dim=2).double()
    small.projection.load_state_dict(loss.projection.state_dict())
    small.set_target_statistics(teacher / 1000)
    assert torch.allclose(small(student, teacher / 1000), expected)
    assert set(loss.state_dict()) >= {"target_mean", "target_scale"}  # checkpoints keep the statistics
    with pytest.raises(ValueError, match=r"expected \(N >= 2, 2\)"):
        loss.set_target_statistics(teacher[:1])


def test_feature_matching_projection_learns():
    torch.manual_seed(0)
    loss = FeatureMatchingLoss(student_dim=4, teacher_dim=3).double()
    student = randn(32, 4, seed=1)
    teacher = student @ randn(4, 3, seed=2)
    optimizer = torch.optim.Adam(loss.parameters(), lr=0.05)
    start = scalar(loss(student, teacher))
    for _ in range(200):
        optimizer.zero_grad()
        loss(student, teacher).backward()
        optimizer.step()
    assert scalar(loss(student, teacher)) < 0.01 * start


# --------------------------------------------------------------------------------------------------------------
# L2-SP
# --------------------------------------------------------------------------------------------------------------


def test_l2sp_is_zero_at_the_start_and_matches_the_formula_after_perturbing():
    module = small_mlp()
    penalty = L2SPPenalty(module, pretrained=["0"], alpha=0.4, beta=0.02)
    assert penalty.pretrained_names == ("0.weight", "0.bias")
    head_only = 0.5 * 0.02 * sum(scalar(p.pow(2).sum()) for p in module[2].parameters())
    assert scalar(penalty(module)) == pytest.approx(head_only, rel=1e-12)
    assert scalar(L2SPPenalty(module, alpha=0.4, beta=0.02)(module)) == 0.0

    start = {name: p.detach().numpy().copy() for name, p in module.named_parameters()}
    with torch.no_grad():
        for index, parameter in enumerate(module.parameters()):
            parameter.add_(randn(*parameter.shape, seed=10 + index) * 0.1)
    now = {name: p.detach().numpy() for name, p in module.named_parameters()}
    expected = 0.5 * 0.4 * sum(np.sum((now[n] - start[n]) ** 2) for n in ("0.weight", "0.bias")) \
        + 0.5 * 0.02 * sum(np.sum(now[n] ** 2) for n in ("2.weight", "2.bias"))
    assert scalar(penalty(module)) == pytest.approx(scalar(expected), rel=1e-12)


def test_l2sp_gradient_pulls_towards_the_start():
    module = small_mlp()
    penalty = L2SPPenalty(module, alpha=1.0, beta=0.0)
    start = [p.detach().clone() for p in module.parameters()]
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(0.3)
    penalty(module).backward()
    for parameter, initial in zip(module.parameters(), start):
        assert torch.allclose(parameter.grad, parameter.detach() - initial)


def test_l2sp_selection_by_predicate_and_state_dict_round_trip():
    module = small_mlp()
    penalty = L2SPPenalty(module, pretrained=lambda name: name.endswith("weight"), alpha=1.0, beta=0.0)
    assert penalty.pretrained_names == ("0.weight", "2.weight")
    state = {key: value.clone() for key, value in penalty.state_dict().items()}
    assert torch.equal(state["start_0"], module[0].weight.detach())

    with torch.no_grad():
        module[0].weight.add_(1.0)
        module[0].bias.add_(1.0)  # not pretrained, and beta = 0: no effect
    assert scalar(penalty(module)) == pytest.approx(0.5 * module[0].weight.numel())
    # A penalty built from the moved module, then given the saved starting point, agrees.
    resumed = L2SPPenalty(module, pretrained=lambda name: name.endswith("weight"), alpha=1.0, beta=0.0)
    assert scalar(resumed(module)) == 0.0
    resumed.load_state_dict(state)
    assert torch.allclose(resumed(module), penalty(module))

    with pytest.warns(UserWarning, match="matched none"):
        L2SPPenalty(module, pretrained=lambda name: False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        L2SPPenalty(module, pretrained=["2.bias"])


def test_l2sp_reports_a_module_that_does_not_match():
    penalty = L2SPPenalty(small_mlp())
    with pytest.raises(ValueError, match="no parameter '0.weight'"):
        penalty(nn.Linear(5, 3))
    other = small_mlp()
    other[2] = nn.Linear(7, 4).double()
    with pytest.raises(ValueError, match="'2.weight' has shape"):
        penalty(other)


# --------------------------------------------------------------------------------------------------------------
# Supervised contrastive losses (every pair of a batch)
# --------------------------------------------------------------------------------------------------------------


def _supcon_by_loops(embeddings: np.ndarray, labels: list[int], temperature: float) -> float:
    z = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    n, losses = len(labels), []
    for i in range(n):
        positives = [p for p in range(n) if p != i and labels[p] == labels[i]]
        if not positives:
            continue
        denominator = sum(math.exp(z[i] @ z[a] / temperature) for a in range(n) if a != i)
        losses.append(-np.mean([math.log(math.exp(z[i] @ z[p] / temperature) / denominator) for p in positives]))
    return float(np.mean(losses))


def _cosent_by_loops(embeddings: np.ndarray, labels: list[int], scale: float) -> float:
    z = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    pairs = [(i, j) for i in range(len(labels)) for j in range(i + 1, len(labels))]
    positive = [z[i] @ z[j] for i, j in pairs if labels[i] == labels[j]]
    negative = [z[i] @ z[j] for i, j in pairs if labels[i] != labels[j]]
    return math.log(1 + sum(math.exp(scale * (c_neg - c_pos)) for c_neg in negative for c_pos in positive))


def test_supervised_contrastive_loss_matches_the_formula_by_loops():
    embeddings, labels = _labelled_batch()
    value = SupervisedContrastiveLoss(temperature=0.3)(embeddings, labels)
    expected = _supcon_by_loops(embeddings.detach().numpy(), labels.tolist(), 0.3)
    assert scalar(value) == pytest.approx(expected, rel=1e-9)


def test_cosent_loss_matches_the_formula_by_loops():
    embeddings, labels = _labelled_batch()
    value = CoSENTLoss(scale=4.0)(embeddings, labels)
    assert scalar(value) == pytest.approx(_cosent_by_loops(embeddings.detach().numpy(), labels.tolist(), 4.0),
                                          rel=1e-9)


@pytest.mark.parametrize("loss", [SupervisedContrastiveLoss(temperature=0.1), CoSENTLoss(scale=20.0)],
                         ids=["supcon", "cosent"])
def test_contrastive_losses_pull_same_class_embeddings_together(loss):
    """Gradient steps on the loss alone, on a toy batch of mixed classes: same-class cosine similarity rises and
    different-class similarity falls (measured as their difference, before and after)."""
    from transferkit.losses.contrastive import class_separation

    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2])
    embeddings = randn(12, 8, seed=5).requires_grad_(True)
    before = class_separation(embeddings, labels)
    optimiser = torch.optim.SGD([embeddings], lr=0.5)
    for _ in range(50):
        optimiser.zero_grad()
        loss(embeddings, labels).backward()
        optimiser.step()
    after = class_separation(embeddings, labels)
    assert before < 0.2
    assert after > before + 0.5


def test_contrastive_losses_without_positive_pairs_are_zero_with_a_gradient():
    embeddings = randn(3, 4, seed=1).requires_grad_(True)
    for loss in (SupervisedContrastiveLoss(), CoSENTLoss()):
        value = loss(embeddings, torch.tensor([0, 1, 2]))
        assert scalar(value) == 0.0
        value.backward()
        assert embeddings.grad is not None


def test_contrastive_losses_refuse_bad_options_and_labels():
    with pytest.raises(ConfigError, match="temperature must be a finite number > 0"):
        SupervisedContrastiveLoss(temperature=0)
    with pytest.raises(ConfigError, match="scale must be a finite number > 0"):
        CoSENTLoss(scale=-1.0)
    with pytest.raises(ValueError, match="one per embedding row"):
        SupervisedContrastiveLoss()(randn(4, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="class indices"):
        CoSENTLoss()(randn(4, 3), torch.tensor([0.0, 1.0, 0.0, 1.0]))
