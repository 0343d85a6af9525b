"""The train-loop helpers every app shares: strict configs, shards, seeds, failures."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from raydc.workloads.loops import config_from_dict, epoch_seed, maybe_fail, shard


@dataclasses.dataclass(frozen=True)
class Config:
    epochs: int = 3
    lr: float = 0.01
    name: str = "x"
    fail_at_epoch: int | None = None


def test_a_config_coerces_numbers_and_keeps_the_rest() -> None:
    config = config_from_dict(Config, {"epochs": 4.0, "lr": 1, "name": "y", "fail_at_epoch": None})
    assert config == Config(epochs=4, lr=1.0, name="y", fail_at_epoch=None)
    assert isinstance(config.epochs, int) and isinstance(config.lr, float)
    assert config_from_dict(Config, {"fail_at_epoch": 2}).fail_at_epoch == 2


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"epoch": 5}, r"unknown config keys: \['epoch'\]"),
        ({"epochs": 2.5}, "'epochs' must be a whole number"),
        ({"epochs": "5"}, "'epochs' must be a whole number"),
        ({"epochs": True}, "'epochs' must be a whole number"),
        ({"lr": "fast"}, "'lr' must be a number"),
        ({"lr": False}, "'lr' must be a number"),
        ({"epochs": None}, "'epochs' must be a whole number"),
    ],
)
def test_a_bad_config_names_the_key(config: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        config_from_dict(Config, config)


def test_shards_are_equal_sized_and_disjoint_for_lists_and_arrays() -> None:
    assert [shard(list(range(11)), r, 2) for r in range(2)] == [[0, 2, 4, 6, 8], [1, 3, 5, 7, 9]]
    parts = [shard(np.arange(10), r, 3) for r in range(3)]
    assert [p.tolist() for p in parts] == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]


def test_seeds_differ_by_epoch_and_rank_and_repeat_on_a_rerun() -> None:
    seeds = {epoch_seed(7, e, r) for e in range(1, 4) for r in range(2)}
    assert len(seeds) == 6 and epoch_seed(7, 2, 1) == epoch_seed(7, 2, 1)


def test_an_injected_failure_spares_a_resumed_run() -> None:
    with pytest.raises(RuntimeError, match="fail_at_epoch=2"):
        maybe_fail(2, 2, resumed=False)
    maybe_fail(2, 2, resumed=True)
    maybe_fail(2, 1, resumed=False)
    maybe_fail(None, 2, resumed=False)
