"""The tune job spec: search spaces, schedulers and search algorithms, and what is refused."""

from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from raydc.server.validation import validation_details
from raydc.specs.jobs import TuneSpec, parse_job_spec
from raydc.specs.tuning import AshaScheduler, FifoScheduler, PbtScheduler
from tests.conftest import REPO
from tests.unit.factories import tune_spec


def parse_tune(**overrides: Any) -> TuneSpec:
    spec = parse_job_spec(tune_spec(**overrides))
    assert isinstance(spec, TuneSpec)
    return spec


def refusal(**overrides: Any) -> list[tuple[str, str]]:
    """(field, message) of each error, the field as the API's 422 names it."""
    with pytest.raises(ValidationError) as caught:
        parse_job_spec(tune_spec(**overrides))
    return [(".".join(map(str, d["loc"][1:])), d["msg"]) for d in validation_details(caught.value)]


def test_the_sentiment_example_parses_with_asha_up_to_its_epochs() -> None:
    spec = parse_job_spec(yaml.safe_load((REPO / "apps/sentiment/tune.yaml").read_text()))
    assert isinstance(spec, TuneSpec)
    assert isinstance(spec.scheduler, AshaScheduler)
    assert spec.scheduler.max_t == spec.config["epochs"] == 4
    assert (spec.num_samples, spec.max_concurrent_trials) == (6, 2)
    assert spec.total_workers == 2


def test_defaults_are_fifo_random_one_trial_at_a_time() -> None:
    spec = parse_tune()
    assert isinstance(spec.scheduler, FifoScheduler)
    assert (spec.search.value, spec.num_samples, spec.max_concurrent_trials) == ("random", 1, 1)
    assert spec.time_budget_s is None


@pytest.mark.parametrize(
    ("distribution", "kind"),
    [
        ({"uniform": [0.0, 0.3]}, "uniform"),
        ({"loguniform": [1e-4, 1e-1]}, "loguniform"),
        ({"randint": [1, 4]}, "randint"),
        ({"choice": [32, 64, "wide"]}, "choice"),
        ({"grid": [True, False]}, "grid"),
    ],
)
def test_each_distribution_is_accepted(distribution: dict, kind: str) -> None:
    spec = parse_tune(search_space={"x": distribution})
    assert spec.search_space["x"].kind == kind


def test_the_stored_spec_keeps_only_the_given_distribution_and_reparses() -> None:
    spec = parse_tune(search_space={"x": {"choice": [1, 2]}, "y": {"uniform": [0, 1]}})
    stored = spec.model_dump(mode="json")
    assert stored["search_space"] == {"x": {"choice": [1, 2]}, "y": {"uniform": [0.0, 1.0]}}
    assert parse_job_spec(stored) == spec


@pytest.mark.parametrize(
    ("distribution", "field", "says"),
    [
        ({"uniform": [0.3, 0.1]}, "search_space.lr", "lo (0.3) must be less than hi (0.1)"),
        ({"loguniform": [0, 0.1]}, "search_space.lr", "must be greater than 0"),
        ({"randint": [4, 4]}, "search_space.lr", "lo (4) must be less than hi (4)"),
        ({"choice": []}, "search_space.lr.choice", "at least 1 item"),
        ({"grid": []}, "search_space.lr.grid", "at least 1 item"),
        ({"uniform": [0.1]}, "search_space.lr.uniform.1", "Field required"),
        ({"uniform": [0, 1], "choice": [1]}, "search_space.lr", "exactly one of"),
        ({}, "search_space.lr", "exactly one of"),
        ({"normal": [0, 1]}, "search_space.lr.normal", "Extra inputs"),
    ],
)
def test_a_bad_distribution_names_its_key(distribution: dict, field: str, says: str) -> None:
    errors = refusal(search_space={"lr": distribution})
    assert any(f == field and says in message for f, message in errors), errors


def test_optuna_refuses_a_grid_naming_the_key() -> None:
    errors = refusal(search="optuna", search_space={"opt": {"grid": ["adam", "sgd"]}})
    assert errors == [
        ("search_space", "Value error, 'opt': optuna cannot search a grid; use choice")
    ]
    assert parse_tune(search="optuna", search_space={"opt": {"choice": ["adam"]}})


def test_grid_search_needs_every_key_to_be_a_grid() -> None:
    space = {"opt": {"grid": ["adam", "sgd"]}, "lr": {"uniform": [0.1, 0.2]}}
    [(field, message)] = refusal(search="grid", search_space=space)
    assert field == "search_space" and "'lr'" in message
    assert parse_tune(search="grid", search_space={"opt": {"grid": ["adam", "sgd"]}})


def test_random_search_crosses_grid_keys_with_sampled_ones() -> None:
    space = {"opt": {"grid": ["adam", "sgd"]}, "lr": {"uniform": [0.1, 0.2]}}
    assert parse_tune(search_space=space).search_space["opt"].kind == "grid"


def test_asha_takes_max_t_from_config_epochs_or_needs_it() -> None:
    assert parse_tune(scheduler={"type": "asha"}).scheduler == AshaScheduler(
        type="asha", grace_period=1, reduction_factor=4, max_t=3
    )
    given = parse_tune(scheduler={"type": "asha", "max_t": 10}).scheduler
    assert isinstance(given, AshaScheduler) and given.max_t == 10
    for config, space in (
        ({}, {"lr": {"uniform": [0.1, 0.2]}}),
        ({"epochs": "3"}, {"lr": {"uniform": [0.1, 0.2]}}),
        ({"epochs": 3}, {"epochs": {"randint": [1, 5]}}),
    ):
        [(field, message)] = refusal(config=config, search_space=space, scheduler={"type": "asha"})
        assert field == "scheduler" and "max_t" in message


def test_pbt_mutations() -> None:
    spec = parse_tune(
        scheduler={
            "type": "pbt",
            "perturbation_interval": 2,
            "mutations": {"lr": {"loguniform": [1e-4, 1e-1]}, "batch": {"choice": [32, 64]}},
        }
    )
    assert isinstance(spec.scheduler, PbtScheduler)
    assert set(spec.scheduler.mutations) == {"lr", "batch"}

    assert refusal(scheduler={"type": "pbt"}) == [("scheduler.mutations", "Field required")]
    [(field, message)] = refusal(scheduler={"type": "pbt", "mutations": {"b": {"grid": [1, 2]}}})
    assert field == "scheduler.mutations" and "'b'" in message
    [(field, _)] = refusal(scheduler={"type": "pbt", "mutations": {"b": {"uniform": [2, 1]}}})
    assert field == "scheduler.mutations.b"
    [(field, message)] = refusal(
        search="optuna", scheduler={"type": "pbt", "mutations": {"lr": {"uniform": [0, 1]}}}
    )
    assert field == "scheduler" and "search 'random'" in message


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"scheduler": {"type": "hyperband"}}, "scheduler"),
        ({"scheduler": {"type": "asha", "grace_period": 0}}, "scheduler.grace_period"),
        ({"scheduler": {"type": "asha", "reduction_factor": 1}}, "scheduler.reduction_factor"),
        ({"scheduler": {"type": "fifo", "max_t": 3}}, "scheduler.max_t"),
        ({"search": "bayes"}, "search"),
        ({"search_space": {}}, "search_space"),
        ({"mode": "maximize"}, "mode"),
        ({"metric": ""}, "metric"),
        ({"num_samples": 0}, "num_samples"),
        ({"max_concurrent_trials": 0}, "max_concurrent_trials"),
        ({"time_budget_s": 0}, "time_budget_s"),
        ({"trials": 3}, "trials"),
        ({"resources": {"workers": {"min": 1, "max": 2}}}, "resources.workers"),
    ],
)
def test_bad_tune_fields_are_named(change: dict, field: str) -> None:
    assert field in [f for f, _ in refusal(**change)]


def test_a_trial_is_a_fixed_size_train_run() -> None:
    [(field, message)] = refusal(resources={"workers": {"min": 1, "max": 2}})
    assert field == "resources.workers" and "fixed size" in message
    spec = parse_tune(resources={"workers": {"min": 2, "max": 2}}, max_concurrent_trials=3)
    assert spec.total_workers == 6
    for missing in ("metric", "mode", "search_space"):
        spec_dict = tune_spec()
        del spec_dict[missing]
        with pytest.raises(ValidationError) as caught:
            parse_job_spec(spec_dict)
        assert [d["loc"][1:] for d in validation_details(caught.value)] == [[missing]]
