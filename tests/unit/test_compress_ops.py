"""The compression steps in plain PyTorch on a small model and data made here: what
each step does to the weights, that it survives being saved and loaded, and the gate."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.ao.nn import quantized as nnq
from torch.ao.nn.quantized import dynamic as nnqd

from raydc.specs.compression import DistillStep, Gate, PruneStep, QuantizeStep
from raydc.workloads import compress_measure, compress_ops, compress_prune
from raydc.workloads.compress_distill import distill_loss
from raydc.workloads.compress_measure import compare, count_params, measure, serialized_size
from raydc.workloads.compress_ops import (
    AttentionHeads,
    Batch,
    Inputs,
    is_compressed,
    load_compressed,
    quantize,
    read_meta,
    save_compressed,
    sparsity,
)
from raydc.workloads.compress_prune import prune_model
from raydc.workloads.compress_smooth import SmoothedLinear

VOCAB, DIM, HIDDEN, CLASSES, LENGTH, KEYWORDS = 1000, 32, 64, 2, 8, 100
VOTERS = 5  # keywords per input: an odd count, so there is no tie


class Toy(nn.Module):
    """Mean of token embeddings -> Linear -> GELU -> Linear: a bag-of-words classifier."""

    def __init__(self, hidden: int = HIDDEN) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, DIM)
        self.up = nn.Linear(DIM, hidden)
        self.down = nn.Linear(hidden, CLASSES)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.down(nn.functional.gelu(self.up(self.embedding(ids).mean(dim=1))))


class ToyApp:
    """The Compressible interface over a synthetic task: five of each input's eight tokens
    are keywords that vote for one of two classes (the majority wins), the rest filler."""

    metric_name = "accuracy"
    metric_points = 100.0
    higher_is_better = True

    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(0)
        votes = torch.randint(0, CLASSES, (KEYWORDS,), generator=generator)
        keywords = torch.randint(0, KEYWORDS, (1200, VOTERS), generator=generator)
        filler = torch.randint(KEYWORDS, VOCAB, (1200, LENGTH - VOTERS), generator=generator)
        ids = torch.cat([keywords, filler], dim=1)
        labels = torch.nn.functional.one_hot(votes[keywords], CLASSES).sum(dim=1).argmax(dim=1)
        self.train_ids, self.train_labels = ids[:1000], labels[:1000]
        self.test_ids, self.test_labels = ids[1000:], labels[1000:]

    def load(self, directory: str) -> nn.Module:
        return load_compressed(directory)

    def metadata(self, directory: str) -> dict[str, Any]:
        return {"labels": ["no", "yes"]}

    def evaluate(self, model: nn.Module) -> float:
        with torch.inference_mode():
            predicted = model(self.test_ids).argmax(dim=1)
        return float((predicted == self.test_labels).float().mean())

    def example_inputs(self, batch_size: int) -> Inputs:
        return (self.test_ids[:batch_size],)

    def calibration_inputs(self, batches: int) -> list[Inputs]:
        return [(self.train_ids[i * 32 : (i + 1) * 32],) for i in range(batches)]

    def train_batches(self, batch_size: int, seed: int, rank: int, world: int) -> list[Batch]:
        order = list(range(rank, len(self.train_ids), world))
        random.Random(seed).shuffle(order)
        chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        return [((self.train_ids[c],), self.train_labels[c]) for c in chunks]

    def student(self, teacher: nn.Module, options: dict[str, Any]) -> nn.Module:
        return Toy(hidden=options.get("hidden", 8))

    def neuron_pairs(self, model: nn.Module) -> list[tuple[nn.Module, str, str]]:
        return [(model, "up", "down")]

    def attention_blocks(self, model: nn.Module) -> list[AttentionHeads]:
        return []


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def app() -> ToyApp:
    return ToyApp()


@pytest.fixture(scope="module")
def parent_dir(app: ToyApp, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained Toy, saved in the compressed-model form (the toy app loads only that)."""
    torch.manual_seed(0)
    model = Toy()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for epoch in range(15):
        for (ids,), labels in app.train_batches(50, epoch, 0, 1):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(ids), labels).backward()
            optimizer.step()
    directory = tmp_path_factory.mktemp("parent") / "model"
    save_compressed(directory, model.eval(), {"steps": []}, app.metadata(""))
    return directory


def test_the_toy_parent_learned_its_task(app: ToyApp, parent_dir: Path) -> None:
    assert app.evaluate(app.load(str(parent_dir))) >= 0.8


def test_dynamic_int8_is_smaller_agrees_with_its_parent_and_reloads(
    app: ToyApp, parent_dir: Path, tmp_path: Path
) -> None:
    parent = app.load(str(parent_dir))
    child = quantize(app.load(str(parent_dir)), QuantizeStep(type="quantize"), [])
    assert isinstance(child.up, nnqd.Linear) and isinstance(child.down, nnqd.Linear)
    assert isinstance(child.embedding, nnq.Embedding)  # 1000 rows: big enough to quantize
    assert serialized_size(child) * 2.5 < serialized_size(parent)
    assert count_params(child) == pytest.approx(count_params(parent), rel=0.01)
    with torch.inference_mode():
        agree = (child(app.test_ids).argmax(1) == parent(app.test_ids).argmax(1)).float().mean()
    assert agree >= 0.95
    save_compressed(tmp_path / "child", child, {"quantized_engine": "x86"}, app.metadata(""))
    back = load_compressed(tmp_path / "child")
    with torch.inference_mode():
        assert torch.equal(back(app.test_ids), child(app.test_ids))
    assert read_meta(tmp_path / "child")["quantized_engine"] == "x86"


def test_embeddings_stay_float_when_asked(app: ToyApp, parent_dir: Path) -> None:
    step = QuantizeStep(type="quantize", embeddings=False)
    child = quantize(app.load(str(parent_dir)), step, [])
    assert isinstance(child.embedding, nn.Embedding) and isinstance(child.up, nnqd.Linear)


def test_static_int8_calibrates_activation_ranges(app: ToyApp, parent_dir: Path) -> None:
    parent = app.load(str(parent_dir))
    step = QuantizeStep(type="quantize", method="static", backend="fbgemm")
    with pytest.raises(ValueError, match="calibration batches"):
        quantize(app.load(str(parent_dir)), step, [])
    child = quantize(app.load(str(parent_dir)), step, app.calibration_inputs(4))
    linear = child.up.linear
    assert isinstance(linear, nnq.Linear) and not isinstance(linear, nnqd.Linear)
    assert float(child.up.quant.scale) > 0  # a fixed input range, from calibration
    assert app.evaluate(child) >= app.evaluate(parent) - 0.05


def test_smoothed_int8_wraps_each_linear_and_reloads(
    app: ToyApp, parent_dir: Path, tmp_path: Path
) -> None:
    parent = app.load(str(parent_dir))
    step = QuantizeStep(type="quantize", smooth_alpha=0.8)
    with pytest.raises(ValueError, match="calibration batches"):
        quantize(app.load(str(parent_dir)), step, [])
    weights = {name: value.clone() for name, value in parent.state_dict().items()}
    child = quantize(parent, step, app.calibration_inputs(4))
    for smoothed in (child.up, child.down):
        assert isinstance(smoothed, SmoothedLinear) and isinstance(smoothed.linear, nnqd.Linear)
    assert isinstance(parent.up, nn.Linear) and isinstance(parent.down, nn.Linear)
    for name, value in parent.state_dict().items():
        assert torch.equal(value, weights[name]), name  # the parent is left as it was
    assert app.evaluate(child) >= app.evaluate(parent) - 0.05
    save_compressed(tmp_path / "child", child, {"quantized_engine": "x86"}, app.metadata(""))
    back = load_compressed(tmp_path / "child")
    with torch.inference_mode():
        assert torch.equal(back(app.test_ids), child(app.test_ids))
    static = QuantizeStep(type="quantize", method="static", backend="fbgemm", smooth_alpha=0.5)
    child = quantize(app.load(str(parent_dir)), static, app.calibration_inputs(4))
    assert isinstance(child.up, SmoothedLinear) and isinstance(child.up.linear.linear, nnq.Linear)
    assert app.evaluate(child) >= app.evaluate(parent) - 0.05


def test_an_engine_torch_lacks_is_refused(app: ToyApp, parent_dir: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(compress_ops, "supported_engines", lambda: ["x86"])
    with pytest.raises(ValueError, match="'qnnpack' is not supported"):
        quantize(app.load(str(parent_dir)), QuantizeStep(type="quantize", backend="qnnpack"), [])


@pytest.mark.parametrize("finetune_epochs", [0, 1])
def test_unstructured_pruning_is_global_exact_and_permanent(
    app: ToyApp, parent_dir: Path, tmp_path: Path, finetune_epochs: int
) -> None:
    step = PruneStep(type="prune", sparsity=0.5, finetune_epochs=finetune_epochs, lr=1e-3)
    child = prune_model(app.load(str(parent_dir)), step, app)
    total = child.up.weight.numel() + child.down.weight.numel()
    assert sparsity(child) == pytest.approx(0.5, abs=1 / total)
    # Global: the layers end up at different sparsities, the smallest weights overall.
    per_layer = [float((w == 0).float().mean()) for w in (child.up.weight, child.down.weight)]
    assert per_layer[0] != per_layer[1]
    # Permanent: plain weights, no mask and no original copy left.
    assert set(child.state_dict()) == set(Toy().state_dict())
    save_compressed(tmp_path / "pruned", child, {}, {})
    reloaded = load_compressed(tmp_path / "pruned")
    assert sparsity(reloaded) == pytest.approx(0.5, abs=1 / total)
    assert app.evaluate(reloaded) >= 0.6


def test_structured_pruning_removes_neurons_from_both_layers(app: ToyApp, parent_dir: Path) -> None:
    parent = app.load(str(parent_dir))
    child = prune_model(app.load(str(parent_dir)), PruneStep(type="prune", method="structured",
                        sparsity=0.25, finetune_epochs=1, lr=1e-3), app)  # fmt: skip
    assert child.up.out_features == 48 and child.down.in_features == 48
    assert count_params(child) < count_params(parent)
    assert app.evaluate(child) >= app.evaluate(parent) - 0.1


class Attention(nn.Module):
    """Multi-head self-attention with its head count in ``num_heads``, as an app has it."""

    def __init__(self, size: int = 16, heads: int = 4) -> None:
        super().__init__()
        self.num_heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(size, size) for _ in range(4))

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        return x.view(batch, length, self.num_heads, width // self.num_heads).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        heads = (self._split(self.q(x)), self._split(self.k(x)), self._split(self.v(x)))
        context = nn.functional.scaled_dot_product_attention(*heads)
        return self.o(context.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1))


def test_pruning_heads_removes_the_ones_that_add_only_a_constant() -> None:
    torch.manual_seed(0)
    block = Attention().eval()
    with torch.no_grad():  # heads 1 and 3 pass on only their value bias, a constant
        for head in (1, 3):
            block.v.weight[head * 4 : (head + 1) * 4] = 0
    x = torch.randn(2, 5, 16)
    before = block(x)
    removed = compress_prune.prune_heads([AttentionHeads(block, "q", "k", "v", "o")], 0.5)
    assert removed == 2 and block.num_heads == 2
    assert [block.q.out_features, block.k.out_features, block.v.out_features] == [8, 8, 8]
    assert block.o.in_features == 8 and block.o.out_features == 16
    torch.testing.assert_close(block(x), before)


def test_pruning_heads_refuses_a_model_without_attention(app: ToyApp, parent_dir: Path) -> None:
    step = PruneStep(type="prune", method="structured", target="heads", sparsity=0.5)
    with pytest.raises(ValueError, match="no attention blocks"):
        prune_model(app.load(str(parent_dir)), step, app)


def test_measure_reports_every_figure(app: ToyApp, parent_dir: Path) -> None:
    [report] = measure(app, app.load(str(parent_dir)))
    for key in ("params", "size_bytes", "sparsity", "metric", "latency_ms_b1_p50",
                "latency_ms_b1_p95", "latency_ms_b32_p50", "latency_ms_b32_p95",
                "throughput_b1_per_s", "throughput_b32_per_s"):  # fmt: skip
        assert key in report, key
    assert report["latency_ms_b1_p95"] >= report["latency_ms_b1_p50"] > 0
    assert report["params"] == VOCAB * DIM + DIM * HIDDEN + HIDDEN + HIDDEN * CLASSES + CLASSES


class Recorder(nn.Module):
    """Appends its name to ``calls`` on each forward pass."""

    def __init__(self, name: str, calls: list[str]) -> None:
        super().__init__()
        self.name, self.calls = name, calls

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(self.name)
        return x


def test_parent_and_child_are_timed_in_alternating_rounds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(compress_measure, "MIN_RUNS", 10)
    monkeypatch.setattr(compress_measure, "TIME_BUDGET_S", 0.0)
    calls: list[str] = []
    parent, child = Recorder("p", calls), Recorder("c", calls)
    samples = compress_measure.time_models([parent, child], (torch.zeros(1),))
    assert [len(own) for own in samples] == [10, 10]
    warmup = ["p"] * compress_measure.WARMUP_RUNS + ["c"] * compress_measure.WARMUP_RUNS
    # Each round: one untimed run (the caches), then ROUND_RUNS timed ones, of each model.
    per_model = 1 + compress_measure.ROUND_RUNS
    round_ = ["p"] * per_model + ["c"] * per_model
    rounds = 10 // compress_measure.ROUND_RUNS
    assert calls == warmup + round_ * rounds


def test_parent_and_child_reports_come_in_their_order(app: ToyApp, parent_dir: Path) -> None:
    parent = app.load(str(parent_dir))
    child = quantize(parent, QuantizeStep(type="quantize"), [])
    parent_report, child_report = measure(app, parent, child)
    assert parent_report["params"] == count_params(parent)
    assert child_report["size_bytes"] == serialized_size(child) < parent_report["size_bytes"]


def _measured(metric: float, latency: float) -> dict[str, Any]:
    return {"params": 100, "size_bytes": 400, "latency_ms_b1_p50": latency,
            "latency_ms_b32_p50": latency * 10, "metric": metric}  # fmt: skip


def test_the_gate_rejects_a_drop_or_a_slowdown_and_says_why(app: ToyApp) -> None:
    parent = _measured(0.90, 10.0)
    ok = compare(app, parent, _measured(0.895, 5.0), Gate(max_accuracy_drop=1.0, min_speedup=1.5))
    assert ok["accepted"] and ok["rejected_reason"] is None
    assert ok["metric_drop_points"] == pytest.approx(0.5) and ok["ratios"]["latency_b1"] == 2.0
    dropped = compare(app, parent, _measured(0.87, 5.0), Gate(max_accuracy_drop=1.0))
    assert not dropped["accepted"]
    assert dropped["rejected_reason"] == (
        "accuracy dropped 3 points, more than the gate's max_accuracy_drop of 1"
    )
    slow = compare(app, parent, _measured(0.90, 9.0), Gate(min_speedup=1.5))
    assert not slow["accepted"] and "speedup 1.111x is under" in slow["rejected_reason"]


def test_distillation_loss_mixes_soft_and_hard_targets() -> None:
    torch.manual_seed(0)
    student, teacher = torch.randn(8, CLASSES), torch.randn(8, CLASSES)
    labels = torch.randint(0, CLASSES, (8,))
    hard = nn.functional.cross_entropy(student, labels)
    step = DistillStep(type="distill", temperature=2.0, alpha=0.0)
    assert distill_loss(student, teacher, labels, step) == pytest.approx(float(hard))
    same = DistillStep(type="distill", temperature=3.0, alpha=1.0)
    assert distill_loss(teacher, teacher, labels, same) == pytest.approx(0.0, abs=1e-6)
    assert distill_loss(student, teacher, labels, same) > 0


def test_a_saved_model_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "out"
    (tmp_path / "out.partial").mkdir()  # a crash mid-write
    assert not is_compressed(target)
    save_compressed(target, Toy(), {}, {})
    assert is_compressed(target) and not (tmp_path / "out.partial").exists()
    with pytest.raises(FileExistsError):
        save_compressed(target, Toy(), {}, {})


def test_binary_scores_distill_against_the_teachers_probability() -> None:
    torch.manual_seed(0)
    student, teacher = torch.randn(16), torch.randn(16)
    labels = torch.randint(0, 2, (16,)).float()
    soft = DistillStep(type="distill", temperature=2.0, alpha=1.0)
    assert distill_loss(teacher, teacher, labels, soft) == pytest.approx(0.0, abs=1e-6)
    assert distill_loss(student, teacher, labels, soft) > 0
    hard = DistillStep(type="distill", alpha=0.0)
    expected = nn.functional.binary_cross_entropy_with_logits(student, labels)
    assert distill_loss(student, teacher, labels, hard) == pytest.approx(float(expected))
