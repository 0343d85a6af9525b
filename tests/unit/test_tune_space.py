"""A tune spec as Ray Tune objects: samplers, schedulers, search algorithm, limits.

Builds the objects only; no Ray cluster is started.
"""

from typing import Any

import pytest
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, PopulationBasedTraining
from ray.tune.search import BasicVariantGenerator
from ray.tune.search.optuna import OptunaSearch
from ray.tune.search.sample import Categorical, Float, Integer

from raydc.specs.jobs import TuneSpec, parse_job_spec
from raydc.workloads import tune_space
from tests.unit.factories import tune_spec


def parse(**overrides: Any) -> TuneSpec:
    spec = parse_job_spec(tune_spec(**overrides))
    assert isinstance(spec, TuneSpec)
    return spec


def samples(domain: Any, count: int = 400) -> list[Any]:
    return list(domain.sample(size=count, random_state=0))


def domain_of(distribution: dict[str, Any]) -> Any:
    return tune_space.param_space(parse(search_space={"x": distribution}))["x"]


def test_uniform_and_loguniform_sample_within_bounds() -> None:
    uniform = domain_of({"uniform": [0.1, 0.3]})
    assert isinstance(uniform, Float) and (uniform.lower, uniform.upper) == (0.1, 0.3)
    assert all(0.1 <= v <= 0.3 for v in samples(uniform))
    log = domain_of({"loguniform": [1e-4, 1e-1]})
    assert isinstance(log, Float)
    values = samples(log)
    assert all(1e-4 <= v <= 1e-1 for v in values)
    # Log-uniform: about a third of the samples in each decade.
    assert 0.2 < sum(v < 1e-3 for v in values) / len(values) < 0.45


def test_randint_includes_both_ends() -> None:
    domain = domain_of({"randint": [1, 4]})
    assert isinstance(domain, Integer)
    assert set(samples(domain)) == {1, 2, 3, 4}


def test_choice_and_grid() -> None:
    choice = domain_of({"choice": [32, 64, "wide"]})
    assert isinstance(choice, Categorical) and set(samples(choice)) == {32, 64, "wide"}
    assert domain_of({"grid": ["adam", "sgd"]}) == {"grid_search": ["adam", "sgd"]}


def test_searched_keys_override_the_fixed_config() -> None:
    space = tune_space.param_space(
        parse(config={"epochs": 3, "lr": 0.5}, search_space={"lr": {"uniform": [0.1, 0.2]}})
    )
    assert space["epochs"] == 3 and isinstance(space["lr"], Float)


def test_asha_counts_reports_up_to_max_t() -> None:
    spec = parse(config={"epochs": 8}, scheduler={"type": "asha", "reduction_factor": 2})
    asha = tune_space.scheduler(spec)
    assert isinstance(asha, AsyncHyperBandScheduler)
    assert (asha._time_attr, asha._max_t) == ("training_iteration", 8)
    # Rungs at grace_period x reduction_factor^k below max_t: 1, 2, 4 (8 is the end).
    assert [rung for rung, _ in asha._brackets[0]._rungs] == [8, 4, 2, 1]


def test_pbt_mutations_become_tune_domains_and_lists() -> None:
    spec = parse(
        scheduler={
            "type": "pbt",
            "perturbation_interval": 2,
            "mutations": {"lr": {"uniform": [0.001, 0.1]}, "batch": {"choice": [16, 32, 64]}},
        }
    )
    pbt = tune_space.scheduler(spec)
    assert isinstance(pbt, PopulationBasedTraining)
    assert pbt._perturbation_interval == 2
    mutations = pbt._hyperparam_mutations
    assert isinstance(mutations["lr"], Float) and mutations["batch"] == [16, 32, 64]


def test_fifo_is_the_default() -> None:
    assert isinstance(tune_space.scheduler(parse()), FIFOScheduler)


@pytest.mark.parametrize("search", ["random", "grid"])
def test_random_and_grid_leave_tune_its_own_generator(search: str) -> None:
    spec = parse(
        search=search, search_space={"x": {"grid": [1, 2]}}, max_concurrent_trials=3,
        num_samples=5, time_budget_s=60,
    )  # fmt: skip
    config = tune_space.tune_config(spec)
    # No search_alg: Tune then builds a BasicVariantGenerator limited to
    # max_concurrent_trials (it ignores the limit for a generator passed in).
    assert config.search_alg is None
    assert (config.max_concurrent_trials, config.num_samples, config.time_budget_s) == (3, 5, 60)
    assert (config.metric, config.mode, config.reuse_actors) == ("accuracy", "max", False)


def test_a_seed_makes_the_same_trials_and_keeps_the_limit() -> None:
    spec = parse(search_space={"lr": {"loguniform": [1e-4, 1e-1]}}, max_concurrent_trials=2,
                 num_samples=6, seed=7)  # fmt: skip
    config = tune_space.tune_config(spec)
    assert isinstance(config.search_alg, BasicVariantGenerator)
    assert config.max_concurrent_trials is None  # the generator carries it
    assert config.search_alg.max_concurrent == 2

    def sampled(seed: int) -> list[float]:
        seeded = parse(search_space={"lr": {"loguniform": [1e-4, 1e-1]}}, num_samples=6,
                       max_concurrent_trials=6, seed=seed)  # fmt: skip
        generator = tune_space.search_algorithm(seeded)
        assert isinstance(generator, BasicVariantGenerator)
        experiment = {"run": lambda config: None, "config": tune_space.param_space(seeded),
                      "num_samples": 6}  # fmt: skip
        generator.add_configurations({"seeded": experiment})
        trials = [generator.next_trial() for _ in range(6)]
        return [trial.config["lr"] for trial in trials if trial is not None]

    first = sampled(7)
    assert len(first) == 6 and len(set(first)) == 6
    assert sampled(7) == first
    assert sampled(8) != first


def test_optuna_is_a_searcher_tune_limits() -> None:
    config = tune_space.tune_config(parse(search="optuna", mode="min", metric="val_loss"))
    assert isinstance(config.search_alg, OptunaSearch)
    assert (config.metric, config.mode, config.max_concurrent_trials) == ("val_loss", "min", 1)
