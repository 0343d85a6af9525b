"""A tune spec's search space, scheduler and search algorithm as Ray Tune objects."""

from __future__ import annotations

from typing import Any

from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import (
    ASHAScheduler,
    FIFOScheduler,
    PopulationBasedTraining,
    TrialScheduler,
)
from ray.tune.search import BasicVariantGenerator, Searcher
from ray.tune.search.optuna import OptunaSearch

from raydc.specs.jobs import TuneSpec
from raydc.specs.tuning import AshaScheduler, Distribution, PbtScheduler
from raydc.specs.tuning import SearchAlgorithm as SearchKind

# Tune counts one `report` of the train loop (an epoch for the bundled apps) as one
# training iteration; schedulers measure a trial's progress in these.
TIME_ATTR = "training_iteration"


def domain(distribution: Distribution) -> Any:
    """Tune's sampler for one distribution of the spec."""
    if distribution.uniform is not None:
        return tune.uniform(*distribution.uniform)
    if distribution.loguniform is not None:
        return tune.loguniform(*distribution.loguniform)
    if distribution.randint is not None:
        low, high = distribution.randint
        return tune.randint(low, high + 1)  # the spec includes hi; Tune's randint excludes it
    if distribution.choice is not None:
        return tune.choice(distribution.choice)
    return tune.grid_search(distribution.grid or [])


def param_space(spec: TuneSpec) -> dict[str, Any]:
    """The config every trial's train loop gets: the fixed config, searched keys sampled."""
    return {**spec.config, **{key: domain(d) for key, d in spec.search_space.items()}}


def _mutation(distribution: Distribution) -> Any:
    # PBT perturbs a list by moving to a neighbouring value, a Tune domain by resampling
    # it or scaling the current value by 0.8 or 1.2.
    if distribution.choice is not None:
        return list(distribution.choice)
    return domain(distribution)


def scheduler(spec: TuneSpec) -> TrialScheduler:
    """metric and mode are left to TuneConfig, which hands them to the scheduler."""
    chosen = spec.scheduler
    if isinstance(chosen, AshaScheduler):
        return ASHAScheduler(
            time_attr=TIME_ATTR,
            max_t=chosen.max_t or 1,  # the spec fills max_t in; `or` only satisfies typing
            grace_period=chosen.grace_period,
            reduction_factor=chosen.reduction_factor,
        )
    if isinstance(chosen, PbtScheduler):
        return PopulationBasedTraining(
            time_attr=TIME_ATTR,
            perturbation_interval=chosen.perturbation_interval,
            hyperparam_mutations={k: _mutation(d) for k, d in chosen.mutations.items()},
            quantile_fraction=chosen.quantile_fraction,
            resample_probability=chosen.resample_probability,
        )
    return FIFOScheduler()


def search_algorithm(spec: TuneSpec) -> Searcher | BasicVariantGenerator | None:
    """None for random and grid without a seed: Tune then makes its BasicVariantGenerator
    itself, limited to max_concurrent_trials. With a seed, the same generator made here,
    seeded and limited (Tune ignores the limit for a generator passed in)."""
    if spec.search is SearchKind.OPTUNA:
        return OptunaSearch(seed=spec.seed)  # TuneConfig wraps it in a ConcurrencyLimiter
    if spec.seed is not None:
        return BasicVariantGenerator(
            max_concurrent=spec.max_concurrent_trials, random_state=spec.seed
        )
    return None


def tune_config(spec: TuneSpec) -> tune.TuneConfig:
    search = search_algorithm(spec)
    return tune.TuneConfig(
        metric=spec.metric,
        mode=spec.mode,
        search_alg=search,
        scheduler=scheduler(spec),
        num_samples=spec.num_samples,
        # A generator made here carries the limit itself.
        max_concurrent_trials=(
            None if isinstance(search, BasicVariantGenerator) else spec.max_concurrent_trials
        ),
        time_budget_s=spec.time_budget_s,
        # A stopped trial's process must go, and its Train run with it, before the next
        # trial takes its place: the scheduler holds room for no more.
        reuse_actors=False,
        trial_dirname_creator=_trial_dirname,
    )


def _trial_dirname(trial: Trial) -> str:
    return str(trial.trial_id)  # the trial's directory is named by the id users see
