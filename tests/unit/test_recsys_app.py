"""Unit tests of the recsys app, without a Ray cluster."""

from __future__ import annotations

import copy
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "apps"))

from recsys.data import (
    DataConfig,
    Interactions,
    leave_one_out,
    make_interactions,
    make_split,
    sample_training_negatives,
)
from recsys.engine import popularity_baseline, random_baseline
from recsys.metrics import per_user_metrics, rank_metrics
from recsys.model import NeuMF

# Small enough for a second of training, big enough for the latent factors to show.
SMALL_DATA = {"num_users": 600, "num_items": 300, "max_interactions": 30}
SMALL_RUN = {**SMALL_DATA, "epochs": 4, "batch_size": 256}


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    # Tiny model: more intra-op threads only spin on a busy 2-core runner.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# --- data -----------------------------------------------------------------------------


def test_interactions_are_deterministic_and_seed_dependent() -> None:
    config = DataConfig(**SMALL_DATA)
    first, again = make_interactions(config), make_interactions(config)
    assert np.array_equal(first.indptr, again.indptr) and np.array_equal(first.items, again.items)
    other = make_interactions(DataConfig(**SMALL_DATA, seed=1))
    assert not np.array_equal(first.items[:100], other.items[:100])


def test_every_user_has_distinct_items_within_the_configured_range() -> None:
    config = DataConfig(**SMALL_DATA)
    interactions = make_interactions(config)
    assert interactions.num_users == config.num_users
    for user in range(interactions.num_users):
        timeline = interactions.of(user)
        assert config.min_interactions <= len(timeline) <= config.max_interactions
        assert len(set(timeline.tolist())) == len(timeline)
        assert timeline.min() >= 0 and timeline.max() < config.num_items


def test_popular_items_exist_but_no_item_dominates() -> None:
    # The popularity bias gives the baseline something to find, but not everything.
    split = make_split(DataConfig(**SMALL_DATA))
    counts = np.sort(split.item_counts())[::-1]
    top_share = counts[: len(counts) // 10].sum() / counts.sum()
    assert 0.15 < top_share < 0.6, top_share


def test_leave_one_out_on_a_hand_made_timeline() -> None:
    interactions = Interactions(
        indptr=np.array([0, 3, 5]), items=np.array([4, 0, 2, 1, 3]), num_items=8
    )
    split = leave_one_out(interactions, num_eval_negatives=3, seed=0)

    assert split.test_items.tolist() == [2, 3]  # each user's last interaction
    assert list(zip(split.train_users.tolist(), split.train_items.tolist(), strict=True)) == [
        (0, 4),
        (0, 0),
        (1, 1),
    ]
    assert np.flatnonzero(split.seen[0]).tolist() == [0, 4]
    assert np.flatnonzero(split.seen[1]).tolist() == [1]
    assert split.eval_negatives.shape == (2, 3)
    for user, interacted in [(0, {4, 0, 2}), (1, {1, 3})]:
        negatives = set(split.eval_negatives[user].tolist())
        assert len(negatives) == 3 and not negatives & interacted
    assert split.eval_candidates()[:, 0].tolist() == [2, 3]


def test_generated_split_holds_out_one_item_per_user_and_never_a_seen_negative() -> None:
    config = DataConfig(**SMALL_DATA)
    interactions = make_interactions(config)
    split = make_split(config)
    assert len(split.train_items) == len(interactions.items) - config.num_users
    for user in range(config.num_users):
        timeline = set(interactions.of(user).tolist())
        assert split.test_items[user] in timeline and not split.seen[user, split.test_items[user]]
        assert not set(split.eval_negatives[user].tolist()) & timeline
    again = make_split(config)
    assert np.array_equal(split.eval_negatives, again.eval_negatives)


def test_training_negatives_avoid_seen_items_and_are_reproducible() -> None:
    split = make_split(DataConfig(**SMALL_DATA))
    users = split.train_users[:500]
    negatives = sample_training_negatives(split.seen, users, per_positive=4, seed=7)
    assert negatives.shape == (500, 4)
    assert not split.seen[users[:, None], negatives].any()
    assert np.array_equal(negatives, sample_training_negatives(split.seen, users, 4, seed=7))


def test_data_config_rejects_too_small_a_catalog() -> None:
    with pytest.raises(ValueError, match="num_items"):
        DataConfig(num_items=100, max_interactions=50, num_eval_negatives=99)


# --- metrics --------------------------------------------------------------------------


def test_metrics_on_hand_made_rankings() -> None:
    scores = np.array(
        [
            [0.9, 0.1, 0.2, 0.3],  # held-out item first: rank 0
            [0.5, 0.9, 0.8, 0.1],  # two negatives above it: rank 2
            [0.0, 0.9, 0.8, 0.7],  # last: rank 3
        ]
    )
    hits, ndcg = per_user_metrics(scores, k=3)
    assert hits.tolist() == [1.0, 1.0, 0.0]
    assert ndcg.tolist() == pytest.approx([1.0, 1 / math.log2(4), 0.0])
    assert rank_metrics(scores, k=3) == pytest.approx((2 / 3, (1 + 0.5) / 3))
    assert rank_metrics(scores, k=1) == pytest.approx((1 / 3, 1 / 3))


def test_ties_count_as_a_random_order() -> None:
    # Tied with all 3 negatives: rank 0..3 equally likely.
    hits, ndcg = per_user_metrics(np.array([[1.0, 1.0, 1.0, 1.0]]), k=2)
    assert hits[0] == pytest.approx(2 / 4)
    assert ndcg[0] == pytest.approx((1 + 1 / math.log2(3)) / 4)
    # Beaten by one, tied with one: rank 1 or 2.
    hits, _ = per_user_metrics(np.array([[1.0, 2.0, 1.0, 0.0]]), k=2)
    assert hits[0] == pytest.approx(1 / 2)


def test_constant_scores_give_the_random_baseline_exactly() -> None:
    split = make_split(DataConfig(**SMALL_DATA))
    random = random_baseline(split, k=10)
    assert random.hit_rate == pytest.approx(10 / 100)
    expected_ndcg = sum(1 / math.log2(rank + 2) for rank in range(10)) / 100
    assert random.ndcg == pytest.approx(expected_ndcg)


def test_metrics_reject_a_malformed_score_matrix() -> None:
    with pytest.raises(ValueError, match="scores"):
        rank_metrics(np.zeros(5))
    with pytest.raises(ValueError, match="k must"):
        rank_metrics(np.zeros((2, 3)), k=0)


def test_model_scores_every_item_in_one_pass_as_it_scores_pairs() -> None:
    torch.manual_seed(0)
    model = NeuMF(num_users=5, num_items=7).eval()
    users = torch.tensor([3, 0])
    all_scores = model.score_all(users)
    assert all_scores.shape == (2, 7)
    pairs = model(torch.tensor([3, 3, 0]), torch.tensor([6, 2, 4]))
    assert torch.allclose(
        pairs, torch.stack([all_scores[0, 6], all_scores[0, 2], all_scores[1, 4]])
    )


# --- train_loop, with the Ray Train context replaced by fakes -------------------------


class FakeRayTrain:
    """Stands in for the raydc context helpers and prepare_model (world size 1)."""

    def __init__(self, restored: dict[str, Any] | None = None) -> None:
        self.restored = restored
        self.reports: list[tuple[dict[str, Any], dict[str, Any] | None]] = []

    def install(self, monkeypatch: pytest.MonkeyPatch, module: Any) -> None:
        monkeypatch.setattr(module, "load_state", lambda: self.restored)
        monkeypatch.setattr(module, "report", self._report)
        monkeypatch.setattr(module, "world_rank", lambda: 0)
        monkeypatch.setattr(module, "world_size", lambda: 1)
        monkeypatch.setattr(module, "prepare_model", lambda model: model)

    def _report(self, metrics: dict[str, Any], state: dict[str, Any] | None = None) -> None:
        # Copy, as torch.save would: state_dict() tensors keep changing while training goes on.
        self.reports.append(copy.deepcopy((metrics, state)))


@pytest.fixture(scope="module")
def train_module() -> Any:
    # train.py imports ray.train and raydc; skip where those are unavailable.
    pytest.importorskip("raydc.workloads.context")
    from recsys import train

    return train


@pytest.fixture(scope="module")
def trained(train_module: Any) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The reports of one short run of the real train_loop."""
    fake = FakeRayTrain()
    with pytest.MonkeyPatch.context() as monkeypatch:
        fake.install(monkeypatch, train_module)
        previous = torch.get_num_threads()
        torch.set_num_threads(1)  # module scope: set up before the autouse one_torch_thread
        try:
            train_module.train_loop(SMALL_RUN)
        finally:
            torch.set_num_threads(previous)
    return fake.reports  # type: ignore[return-value]


@pytest.fixture
def checkpoint_dir(trained: list[tuple[dict[str, Any], dict[str, Any]]], tmp_path: Path) -> str:
    from raydc.workloads.context import STATE_FILE

    torch.save(trained[-1][1], tmp_path / STATE_FILE)
    return str(tmp_path)


def test_short_training_clearly_beats_popularity_and_random(
    trained: list[tuple[dict[str, Any], dict[str, Any]]],
) -> None:
    assert [metrics["epoch"] for metrics, _ in trained] == [1, 2, 3, 4]
    metrics, state = trained[-1]
    assert set(metrics) == {
        "epoch",
        "train_loss",
        "hit_rate",
        "ndcg",
        "popularity_hit_rate",
        "popularity_ndcg",
    }
    assert trained[-1][0]["train_loss"] < trained[0][0]["train_loss"]
    # The baselines, recomputed independently of the train loop.
    split = make_split(DataConfig(**SMALL_DATA))
    popularity = popularity_baseline(split)
    assert metrics["popularity_hit_rate"] == pytest.approx(popularity.hit_rate)
    assert popularity.hit_rate > random_baseline(split).hit_rate  # popularity is real signal
    assert metrics["hit_rate"] > popularity.hit_rate + 0.15, metrics
    assert metrics["ndcg"] > popularity.ndcg + 0.1, metrics
    assert {"model", "optimizer", "epoch", "model_config", "data_config", "seen_items"} <= set(
        state
    )


def test_train_loop_resumes_from_a_checkpoint_at_the_next_epoch(
    train_module: Any,
    trained: list[tuple[dict[str, Any], dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    retry = FakeRayTrain(restored=trained[1][1])  # the state after epoch 2
    retry.install(monkeypatch, train_module)
    train_module.train_loop(SMALL_RUN)
    assert [metrics["epoch"] for metrics, _ in retry.reports] == [3, 4]
    # Negatives and order are seeded per epoch, so the resumed run retraces the original.
    assert retry.reports[-1][0]["hit_rate"] == pytest.approx(trained[-1][0]["hit_rate"], abs=0.02)


def test_fail_at_epoch_fails_only_a_fresh_run(
    train_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeRayTrain()
    fake.install(monkeypatch, train_module)
    with pytest.raises(RuntimeError, match="fail_at_epoch"):
        train_module.train_loop({**SMALL_RUN, "epochs": 2, "fail_at_epoch": 2})
    assert [metrics["epoch"] for metrics, _ in fake.reports] == [1]


def test_evaluate_checkpoint_matches_the_reported_metrics(
    train_module: Any, trained: list[tuple[dict[str, Any], dict[str, Any]]], checkpoint_dir: str
) -> None:
    result = train_module.evaluate_checkpoint(checkpoint_dir)
    assert result["epoch"] == 4 and result["k"] == 10
    assert result["hit_rate"] == pytest.approx(trained[-1][0]["hit_rate"])
    assert result["ndcg"] == pytest.approx(trained[-1][0]["ndcg"])


def test_shard_gives_every_rank_the_same_number_of_interactions(train_module: Any) -> None:
    values = np.arange(11)
    shards = [train_module.shard(values, rank, 3) for rank in range(3)]
    assert [len(s) for s in shards] == [3, 3, 3]
    assert not set(shards[0].tolist()) & set(shards[1].tolist())


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"epoch": 5}, "epoch"),
        ({"epochs": "5"}, "epochs"),
        ({"lr": True}, "lr"),
        ({"epochs": 0}, "epochs"),
        ({"dropout": 1.5}, "dropout"),
        ({"top_k": 200}, "top_k"),
        ({"num_items": 100}, "num_items"),
    ],
)
def test_bad_config_is_rejected_naming_the_key(
    train_module: Any, config: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        train_module.train_loop(config)


# --- serving --------------------------------------------------------------------------


@pytest.fixture
def predictor(checkpoint_dir: str) -> Any:
    from recsys.serve import Predictor

    return Predictor(checkpoint_dir)


def test_predictor_recommends_unseen_items_best_first(predictor: Any) -> None:
    split = make_split(DataConfig(**SMALL_DATA))
    predictions = predictor.predict([{"user": 0}, {"user": 5, "k": 3}])
    json.dumps(predictions)  # JSON-able as returned

    first, second = predictions
    assert len(first["items"]) == 10 and len(second["items"]) == 3
    for user, prediction in [(0, first), (5, second)]:
        items, scores = prediction["items"], prediction["scores"]
        assert scores == sorted(scores, reverse=True) and all(0 < s < 1 for s in scores)
        assert len(set(items)) == len(items)
        assert not split.seen[user, items].any()  # already-bought items are left out

    # The top item is the model's best-scored unseen item.
    model = predictor.model
    logits = model.score_all(torch.tensor([0]))[0].detach().numpy()
    logits[split.seen[0]] = -np.inf
    assert first["items"][0] == int(logits.argmax())


def test_predictor_batches_give_the_same_answers_as_single_calls(predictor: Any) -> None:
    inputs = [{"user": u, "k": 5} for u in (3, 1, 4, 1, 5)]
    together = predictor.predict(inputs)
    alone = [predictor.predict([item])[0] for item in inputs]
    assert [p["items"] for p in together] == [p["items"] for p in alone]
    assert predictor.predict([]) == []


def test_predictor_ranks_only_the_given_candidates(predictor: Any) -> None:
    candidates = [7, 42, 3, 120, 299]
    [ranked] = predictor.predict([{"user": 2, "candidates": candidates, "k": 10}])
    assert sorted(ranked["items"]) == sorted(candidates)  # k above the count: all of them
    [top2] = predictor.predict([{"user": 2, "candidates": candidates, "k": 2}])
    assert top2["items"] == ranked["items"][:2]


def test_predictor_can_include_seen_items(predictor: Any) -> None:
    split = make_split(DataConfig(**SMALL_DATA))
    [everything] = predictor.predict([{"user": 0, "k": 300, "exclude_seen": False}])
    assert len(everything["items"]) == 300
    [unseen] = predictor.predict([{"user": 0, "k": 300}])
    assert len(unseen["items"]) == 300 - int(split.seen[0].sum())


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ("user 3", "object"),
        ({"k": 3}, "user"),
        ({"user": -1}, "user"),
        ({"user": 600}, "user"),
        ({"user": "3"}, "user"),
        ({"user": True}, "user"),
        ({"user": 0, "k": 0}, "'k'"),
        ({"user": 0, "k": 2.5}, "'k'"),
        ({"user": 0, "candidates": []}, "candidates"),
        ({"user": 0, "candidates": [1, 300]}, "candidates"),
        ({"user": 0, "candidates": [1, 1]}, "candidates"),
        ({"user": 0, "exclude_seen": "yes"}, "exclude_seen"),
        ({"user": 0, "items": [1]}, "items"),
    ],
)
def test_predictor_rejects_bad_input_naming_the_field(predictor: Any, bad: Any, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        predictor.predict([{"user": 1}, bad])
