"""Unit tests of the sentiment app, without a Ray cluster."""

from __future__ import annotations

import copy
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "apps"))

from sentiment.data import (
    LABELS,
    build_vocab,
    encode,
    make_dataset,
    split_indices,
    tokenize,
    train_test_split,
)
from sentiment.engine import (
    encode_examples,
    evaluate,
    make_batches,
    prepare_data,
    train_one_epoch,
)
from sentiment.model import SentimentClassifier, collate, predict


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    # The model is tiny: with two intra-op threads on a busy 2-core runner, OpenMP
    # spin-waiting made training 10x slower. (Ray sets OMP_NUM_THREADS to a worker's
    # CPU count, 1 in train.yaml, so Ray Train workers run single-threaded as well.)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def dataset() -> list[tuple[str, int]]:
    return make_dataset()


def test_dataset_is_deterministic_and_seed_dependent(dataset: list[tuple[str, int]]) -> None:
    assert make_dataset() == dataset
    assert make_dataset(200, seed=1) != dataset[:200]


def test_dataset_size_labels_and_balance(dataset: list[tuple[str, int]]) -> None:
    assert len(dataset) >= 6000
    assert LABELS == ["negative", "neutral", "positive"]
    counts = Counter(label for _, label in dataset)
    assert set(counts) == {0, 1, 2}
    for label, count in counts.items():
        assert 0.20 <= count / len(dataset) <= 0.45, (LABELS[label], count)


def test_headlines_are_distinct(dataset: list[tuple[str, int]]) -> None:
    texts = [text for text, _ in dataset]
    assert len(set(texts)) == len(texts)


def test_polar_words_occur_in_more_than_one_class(dataset: list[tuple[str, int]]) -> None:
    # The hardness the generator promises: no single cue word gives the label away.
    classes_of: dict[str, set[int]] = {}
    for text, label in dataset:
        for token in set(tokenize(text)):
            classes_of.setdefault(token, set()).add(label)
    for word in ["beat", "cuts", "raises", "jumps", "falls", "guidance", "weak", "strong"]:
        assert len(classes_of.get(word, set())) >= 2, word


def test_split_is_a_disjoint_partition(dataset: list[tuple[str, int]]) -> None:
    train_idx, test_idx = split_indices(len(dataset), test_fraction=0.2, seed=0)
    assert len(test_idx) == 1200 and len(train_idx) == 4800
    assert not set(train_idx) & set(test_idx)
    assert sorted(train_idx + test_idx) == list(range(len(dataset)))

    train, test = train_test_split(dataset, test_fraction=0.2, seed=0)
    assert (len(train), len(test)) == (4800, 1200)
    # Headlines are distinct, so a split by index is also a split by text.
    assert not {text for text, _ in train} & {text for text, _ in test}


def test_tokenize_normalises_numbers_and_adds_bigrams() -> None:
    tokens = tokenize("Apex Bank fails to beat Q3 estimates; shares down 4.5% to $12")
    assert "<pct>" in tokens and "<money>" in tokens and "quarter" in tokens
    assert "fails_to" in tokens and "to_beat" in tokens
    assert all(token == token.lower() for token in tokens)


def test_vocab_reserves_zero_for_unknown_tokens() -> None:
    vocab = build_vocab(["profit beats estimates", "profit misses estimates"])
    assert vocab["<pad>"] == 0
    assert sorted(vocab.values()) == list(range(len(vocab)))
    assert build_vocab(["a b c"], max_size=2) == {"<pad>": 0, "a": 1}
    ids = encode("profit soars", vocab)
    assert ids[0] == vocab["profit"] and 0 in ids


def test_collate_builds_embedding_bag_offsets() -> None:
    ids, offsets, labels = collate([([1, 2, 3], 0), ([4], 2), ([5, 6], 1)])
    assert ids.tolist() == [1, 2, 3, 4, 5, 6]
    assert offsets.tolist() == [0, 3, 4]
    assert labels.tolist() == [0, 2, 1]


def test_plain_torch_training_learns_held_out_headlines() -> None:
    torch.manual_seed(0)
    data = prepare_data(num_examples=6000, seed=0)
    model = SentimentClassifier(len(data.vocab))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    train_examples = encode_examples(data.train, data.vocab)
    test_batches = make_batches(encode_examples(data.test, data.vocab), batch_size=512)

    losses = []
    for epoch in range(1, 4):
        batches = make_batches(train_examples, batch_size=64, shuffle_seed=epoch)
        losses.append(train_one_epoch(model, optimizer, batches))
    held_out = evaluate(model, test_batches)

    assert losses[-1] < losses[0]
    assert held_out.accuracy >= 0.8, held_out
    assert predict(model, data.vocab, ["Apex Bank raises full-year guidance"]) == ["positive"]


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


SMALL_RUN = {"epochs": 2, "num_examples": 1000, "lr": 0.01}


@pytest.fixture(scope="module")
def train_module() -> Any:
    # train.py imports ray.train and raydc; skip where those are unavailable.
    pytest.importorskip("raydc.workloads.context")
    from sentiment import train

    return train


def test_train_loop_reports_each_epoch_with_a_resumable_state(
    train_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeRayTrain()
    fake.install(monkeypatch, train_module)
    train_module.train_loop(SMALL_RUN)

    assert [metrics["epoch"] for metrics, _ in fake.reports] == [1, 2]
    metrics, state = fake.reports[-1]
    assert set(metrics) == {"epoch", "train_loss", "accuracy", "val_loss"}
    assert metrics["accuracy"] > 0.5
    assert state is not None
    assert {"model", "optimizer", "epoch", "vocab", "model_config", "labels"} <= set(state)
    assert state["labels"] == LABELS and state["epoch"] == 2


def test_fail_at_epoch_fails_fresh_runs_and_resumes_from_the_checkpoint(
    train_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = {**SMALL_RUN, "epochs": 3, "fail_at_epoch": 2}
    first = FakeRayTrain()
    first.install(monkeypatch, train_module)
    with pytest.raises(RuntimeError, match="fail_at_epoch"):
        train_module.train_loop(config)
    assert [metrics["epoch"] for metrics, _ in first.reports] == [1]

    retry = FakeRayTrain(restored=first.reports[-1][1])
    retry.install(monkeypatch, train_module)
    train_module.train_loop(config)
    assert [metrics["epoch"] for metrics, _ in retry.reports] == [2, 3]


def test_evaluate_checkpoint_matches_the_reported_accuracy(
    train_module: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from raydc.workloads.context import STATE_FILE

    fake = FakeRayTrain()
    fake.install(monkeypatch, train_module)
    train_module.train_loop(SMALL_RUN)
    metrics, state = fake.reports[-1]
    torch.save(state, tmp_path / STATE_FILE)

    result = train_module.evaluate_checkpoint(str(tmp_path))
    assert result["epoch"] == 2
    assert result["accuracy"] == pytest.approx(metrics["accuracy"])


def test_shard_gives_every_rank_the_same_number_of_examples(train_module: Any) -> None:
    examples = list(range(11))
    shards = [train_module.shard(examples, rank, 3) for rank in range(3)]
    assert [len(s) for s in shards] == [3, 3, 3]
    assert not set(shards[0]) & set(shards[1]) and not set(shards[1]) & set(shards[2])


def test_unknown_config_keys_are_rejected(train_module: Any) -> None:
    with pytest.raises(ValueError, match="epoch"):
        train_module.train_loop({"epoch": 5})


# --- serving --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sentiment_checkpoint(
    train_module: Any, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, dict[str, Any]]:
    """A checkpoint directory of one short train_loop run, and the state saved in it."""
    from raydc.workloads.context import STATE_FILE

    fake = FakeRayTrain()
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # module scope: set up before the autouse one_torch_thread
    try:
        with pytest.MonkeyPatch.context() as monkeypatch:
            fake.install(monkeypatch, train_module)
            train_module.train_loop(SMALL_RUN)
    finally:
        torch.set_num_threads(previous)
    state = fake.reports[-1][1]
    assert state is not None
    directory = tmp_path_factory.mktemp("sentiment-checkpoint")
    torch.save(state, directory / STATE_FILE)
    return str(directory), state


def test_predictor_labels_held_out_headlines_from_a_checkpoint(
    train_module: Any, sentiment_checkpoint: tuple[str, dict[str, Any]]
) -> None:
    from sentiment.serve import Predictor

    checkpoint_dir, state = sentiment_checkpoint
    predictor = Predictor(checkpoint_dir)
    held_out = prepare_data(num_examples=1000, seed=0).test[:100]
    texts = [text for text, _ in held_out]

    labels = predictor.predict(texts)
    assert len(labels) == len(texts) and set(labels) <= set(LABELS)
    accuracy = sum(LABELS[gold] == label for (_, gold), label in zip(held_out, labels, strict=True))
    assert accuracy / len(held_out) > 0.6  # chance is 1/3
    # The same answers one at a time as in a batch, and as the trained model in memory.
    assert [predictor.predict([text])[0] for text in texts[:5]] == labels[:5]
    assert labels == predict(train_module.load_model(state), state["vocab"], texts)
    assert predictor.predict([""]) in (["negative"], ["neutral"], ["positive"])  # no known words
    assert predictor.predict([]) == []


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (3, "headline string, got int"),
        (None, "got NoneType"),
        (["x"], "got list"),
        ("x" * 10_001, "10001 characters"),
    ],
)
def test_predictor_rejects_bad_input_saying_why(
    sentiment_checkpoint: tuple[str, dict[str, Any]], bad: Any, message: str
) -> None:
    from sentiment.serve import Predictor

    with pytest.raises(ValueError, match=message):
        Predictor(sentiment_checkpoint[0]).predict(["Apex Bank beats estimates", bad])


def test_predictor_refuses_a_checkpoint_with_other_labels(
    sentiment_checkpoint: tuple[str, dict[str, Any]], tmp_path: Path
) -> None:
    from raydc.workloads.context import STATE_FILE
    from sentiment.serve import Predictor

    torch.save({**sentiment_checkpoint[1], "labels": ["bad", "good"]}, tmp_path / STATE_FILE)
    with pytest.raises(ValueError, match="labels"):
        Predictor(str(tmp_path))
