"""The method registries (strategies, adaptation methods, fusion methods, baselines, validators): every entry
answers every hook, unknown names are ConfigErrors naming the option and the known names, and no module outside
the registries chooses a method by comparing its name."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import numpy as np
import pytest
import torch

from transferkit.config import STRATEGIES, FitConfig, make_config, option_users
from transferkit.errors import ConfigError
from transferkit.evaluation.baselines import BASELINES, Baseline, BaselineResult, baseline_names, choose_baselines, \
    get_baseline
from transferkit.evaluation.validators import POOL_VALIDATORS, VALIDATORS, ValidationData, get_validator, \
    validator_names
from transferkit.fusion import METHODS as FUSION_METHODS
from transferkit.fusion.registry import get_fusion_method
from transferkit.strategies.adaptation.config import AdaptConfig
from transferkit.strategies.adaptation.registry import FEATURES, KINDS, TRAINED, adaptation_method_names, \
    get_adaptation_method, reference_method, tradeoff_method_names
from transferkit.strategies.base import TrainingStrategy
from transferkit.strategies.registry import Strategy, build_strategy, get_strategy, keeps_pretrained_backbone, \
    register_strategy, strategy_names

SRC = Path(__file__).resolve().parents[1] / "src" / "transferkit"


def _flat_fields() -> set[str]:
    from transferkit.strategies.distill_setup import DistillConfig
    from transferkit.engine.run_record import flatten

    return set(flatten(FitConfig().model_dump())) | set(flatten(DistillConfig.model_construct().model_dump()))


# --------------------------------------------------------------------------------------------------- strategies

@pytest.mark.parametrize("name", strategy_names())
def test_every_strategy_answers_every_hook(name):
    entry = get_strategy(name)
    assert entry.name == name and entry.description
    fields = _flat_fields()
    assert set(entry.options) <= fields, f"{name} declares options no config has: {set(entry.options) - fields}"
    space = entry.search_space()
    assert set(space) <= fields | {"distill.temperature", "distill.alpha"}
    assert all(option in entry.options or option not in option_users() for option in space), \
        f"{name}'s default search space holds options {name} ignores"
    if entry.build is not None:  # an engine strategy, built from a default config with its name
        strategy = entry.build(make_config(strategy=name))
        assert isinstance(strategy, TrainingStrategy) and entry.trains_network
        assert entry.default_lr() == strategy.default_lr
    if entry.trains_network and not entry.chooses_strategy:
        assert entry.default_lr is not None and entry.default_lr() > 0
    assert (entry.scratch_not_default is None) == entry.trains_network, \
        "the from-scratch baseline runs by default beside exactly the strategies that train a network"
    assert entry.verb in ("fit", "distill") and entry.step_cost > 0
    assert all(isinstance(p, str) for p in entry.packages)


def test_fit_offers_every_registered_fit_strategy():
    literal = typing.get_args(FitConfig.model_fields["strategy"].annotation)
    fit_strategies = [n for n in strategy_names() if get_strategy(n).verb == "fit"]
    assert list(literal) == list(STRATEGIES) == fit_strategies


def test_the_probe_path_and_the_engine_path_are_entry_attributes():
    assert not get_strategy("linear-probe").trains_network and get_strategy("linear-probe").build is None
    assert {n for n in strategy_names() if get_strategy(n).build is not None} == {"finetune", "lp-ft", "lora", "l2sp",
                                                                                 "contrastive"}
    assert get_strategy("auto").chooses_strategy and get_strategy("distill").verb == "distill"
    assert keeps_pretrained_backbone("linear-probe") and not keeps_pretrained_backbone("finetune")
    assert not keeps_pretrained_backbone("adapt:dann") and not keeps_pretrained_backbone(None)


def test_option_users_come_from_the_entries():
    users = option_users()
    assert users["probe_c"] == ("linear-probe", "lp-ft", "contrastive")
    assert users["epochs"] == ("finetune", "lp-ft", "lora", "l2sp", "contrastive", "distill")
    assert users["finetune.keep_probe"] == ("lp-ft",)
    assert users["finetune.freeze"] == ("finetune", "lp-ft", "l2sp", "distill")
    assert users["lora.rank"] == ("lora",) and users["l2sp.alpha"] == ("l2sp",)


def test_ignored_options_warning_reads_the_entries():
    config = make_config(strategy="linear-probe", epochs=3, lora={"rank": 4})
    with pytest.warns(UserWarning) as caught:
        config.check_options_apply()
    message = str(caught[0].message)
    assert "--strategy linear-probe ignores" in message and "--epochs" in message and "--lora-rank" in message
    assert "distill" not in message  # another verb's strategy is not offered to fit


def test_scratch_default_reads_the_entry():
    chosen, skipped = choose_baselines(None, "linear-probe", 10)
    assert chosen == ["raw"] and "trains no network" in skipped["scratch"]
    assert choose_baselines(None, "lp-ft", 10) == (["raw", "scratch"], {})


def test_unknown_strategy_is_a_config_error_naming_the_option_and_the_known_names():
    with pytest.raises(ConfigError) as caught:
        get_strategy("sgd")
    assert "'strategy'" in str(caught.value) and "'sgd'" in str(caught.value)
    assert all(name in str(caught.value) for name in strategy_names())


def test_build_strategy_refuses_a_strategy_without_an_engine_builder():
    with pytest.raises(ConfigError, match="not a training strategy; choose one of finetune, lp-ft, lora, l2sp"):
        build_strategy(make_config(strategy="linear-probe"))


def test_a_name_registered_twice_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        register_strategy(Strategy(name="finetune", description="again", trains_network=True))


# --------------------------------------------------------------------------------------------------- adaptation

@pytest.mark.parametrize("name", adaptation_method_names())
def test_every_adaptation_method_answers_every_hook(name):
    from transferkit.strategies.adaptation.plan import AdaptationNetwork, AdaptationPlan

    entry = get_adaptation_method(name)
    assert entry.kind in KINDS and entry.description
    assert set(entry.options) <= set(AdaptConfig.model_fields)
    if entry.kind == FEATURES:
        aligner = entry.aligner()
        rng = np.random.default_rng(0)
        source, target = rng.normal(size=(30, 6)).astype(np.float32), rng.normal(size=(20, 6)).astype(np.float32)
        assert aligner.fit(source, target).transform(source).shape[0] == 30
        assert not entry.tradeoffs and entry.target_loss is None
        return
    assert entry.aligner is None
    assert entry.starts_from is None or get_adaptation_method(entry.starts_from).kind == FEATURES
    torch.manual_seed(0)
    head = torch.nn.Linear(6, 3)
    plan = AdaptationPlan(name, entry.tradeoffs[0] if entry.tradeoffs else 0.0, backbone_trainable=False)
    network = AdaptationNetwork(head, None, plan.auxiliary_modules(6, 3, head))
    plan.set_progress(0.5)
    inputs = {"source": torch.randn(8, 6), "target": torch.randn(8, 6), "weight": torch.ones(8)}
    terms = plan.loss_terms(network, inputs, torch.randint(0, 3, (8,)))
    assert "cross_entropy" in terms and all(torch.isfinite(t) for t in terms.values())
    if entry.target_loss is not None:
        assert entry.tradeoffs, f"{name} has a target term but no trade-off grid"
        assert name.replace("-", "_") in terms
        sum(terms.values()).backward()
        assert any(p.grad is not None for p in network.parameters())
    else:
        assert set(terms) == {"cross_entropy"}


def test_adapt_offers_every_registered_method():
    literal = typing.get_args(AdaptConfig.model_fields["method"].annotation)
    assert list(literal) == [*adaptation_method_names(), "auto"]
    assert reference_method() == "source-only"
    assert tradeoff_method_names() == ["dan", "coral", "dann", "cdan", "mcc", "entropy", "self-train", "probe-mcc"]
    assert {n for n in adaptation_method_names() if get_adaptation_method(n).kind == TRAINED} == {
        "source-only", "dan", "coral", "dann", "cdan", "mcc", "entropy", "self-train", "probe-mcc", "iw"}


def test_unknown_adaptation_method_is_a_config_error_naming_the_known_names():
    with pytest.raises(ConfigError) as caught:
        get_adaptation_method("mmd")
    assert "'method'" in str(caught.value) and "'mmd'" in str(caught.value) and "subspace" in str(caught.value)


# --------------------------------------------------------------------------------------------------- fusion

@pytest.mark.parametrize("name", FUSION_METHODS)
def test_every_fusion_method_answers_every_hook(name):
    entry = get_fusion_method(name)
    assert entry.description and entry.space in ("weights", "outputs", "features") and callable(entry.run)
    values = dict(models=None, val="val.csv", train="train.csv", pretrained=None, soup="greedy", weighting="uniform",
                  backbones=["a", "b"], ranking=None, top=2, reduce=None, seed=0, alphas=lambda: [0.5],
                  eval_sets=None, common={"output": None})
    models, options = entry.from_cli(values)
    assert options["output"] is None and ("val" in options)


def test_unknown_fusion_method_is_a_config_error():
    from transferkit.workflows.fuse import fuse

    with pytest.raises(ConfigError, match="option 'method': unknown fusion method 'mean'; known fusion methods: interpolate, soup, ensemble, stack"):
        fuse("mean", ["a"])


# --------------------------------------------------------------------------------------------------- baselines

@pytest.mark.parametrize("name", baseline_names())
def test_every_baseline_answers_every_hook(name):
    entry = get_baseline(name)
    assert isinstance(entry, Baseline) and entry.description and BASELINES[name] is entry.run


def test_raw_baseline_runs_through_its_entry():
    from transferkit.data.dataset import Dataset

    texts = [f"good day {i}" for i in range(10)] + [f"bad night {i}" for i in range(10)]
    labels = ["pos"] * 10 + ["neg"] * 10
    data = Dataset("text", texts, labels, "t.csv")
    result = get_baseline("raw").run(data, data, ["neg", "pos"], seed=0, config=None, backbone=None, val=None)
    assert isinstance(result, BaselineResult) and result.probabilities.shape == (20, 2)


def test_unknown_baseline_is_a_config_error():
    with pytest.raises(ConfigError, match="option 'baselines': unknown baseline 'knn'; known baselines: raw, scratch"):
        get_baseline("knn")


# --------------------------------------------------------------------------------------------------- validators

@pytest.mark.parametrize("name", validator_names())
def test_every_validator_answers_every_hook(name):
    entry = get_validator(name)
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(3), size=12)
    if entry.pool_scores is not None:
        scores = entry.pool_scores([proba, proba[::-1]])
        assert scores.shape == (2,) and name in POOL_VALIDATORS
        return
    data = ValidationData(proba, source_val_proba=proba, source_val_labels=rng.integers(0, 3, 12),
                          source_val_weights=np.ones(12))
    assert np.isfinite(entry.score(data)) and VALIDATORS[name] is entry.score
    assert entry.description


def test_adapt_offers_every_registered_validator():
    literal = typing.get_args(AdaptConfig.model_fields["validator"].annotation)
    assert set(literal) == set(validator_names())


def test_unknown_validator_is_a_config_error():
    with pytest.raises(ConfigError, match="option 'validator': unknown validator 'acc'"):
        get_validator("acc")


# --------------------------------------------------------------------------------------------------- no branches

#: A comparison of a strategy or method with a literal name: what the registries replace.
BRANCH = re.compile(r"""(?:strategy|method)\s*(?:==|!=)\s*["']|(?:strategy|method)\s+(?:not\s+)?in\s*\(\s*["']"""
                    r"""|["'][\w-]+["']\s*(?:==|!=)\s*(?:config\.)?(?:strategy|method)\b""")
#: Modules allowed to compare names, each with the reason.
ALLOWED = {
    # the compression verb's quantization methods and a plot's projection method are not method registries
    "compress/quantize.py": "dynamic / static quantization are options of one step, not registered methods",
    "evaluation/domain_gap.py": "pca / tsne: the projection of one plot",
    "fusion/soups.py": "greedy / uniform: the two variants of the soup method itself",
    # AdaptConfig decides what "auto" means (try the candidates): it is the method option's own value, not a method
    "strategies/adaptation/config.py": "method 'auto' is the option's choice among methods, decided in its config",
}


def test_no_method_is_chosen_by_comparing_its_name_outside_the_registries():
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC).as_posix()
        if relative in ALLOWED or "/entries/" in relative or "/methods/" in relative or relative.endswith("registry.py"):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if BRANCH.search(code):
                offenders.append(f"{relative}:{number}: {line.strip()}")
    assert not offenders, "choose through the registry entry instead:\n" + "\n".join(offenders)


def test_the_branch_check_finds_a_branch():
    assert BRANCH.search('if config.strategy == "lora":')
    assert BRANCH.search('if method in ("dan", "coral"):')
    assert BRANCH.search('x = 1 if "iw" == method else 0')
    assert not BRANCH.search("if entry.trains_network:")
