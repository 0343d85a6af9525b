"""The app's side of compression, quantization, and the saved form of a compressed
model, in plain PyTorch. No Ray here; ``compress.py`` runs the steps in a worker,
``compress_prune.py`` prunes and ``compress_distill.py`` trains students.

An app opts in with one object (:class:`Compressible`) that says how to load a model
version, evaluate it, feed it, and build a student. Every model handled here is the
app's whole inference model (``model(*inputs) -> logits``), on the CPU.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.ao import quantization as tq
from torch.ao.nn import quantized as nnq

from raydc.specs.compression import QuantizeStep
from raydc.workloads.compress_smooth import smooth

Inputs = tuple[torch.Tensor, ...]
Batch = tuple[Inputs, torch.Tensor]  # (model inputs, true labels)

MODEL_FILE = "model.pt"  # the whole module, pickled (its classes come from the app)
META_FILE = "compressed.json"  # what the steps were; the app's metadata
STATE_FILE = "state.pt"  # the app's own metadata (labels, ...) as its checkpoints hold it
# An embedding table smaller than this stays float: too small to save anything.
MIN_QUANTIZED_EMBEDDING_ROWS = 256
# torch marks its eager-mode quantization API deprecated in favour of torchao; it is
# what runs on a CPU without compiling, so its warnings are silenced here.
_DEPRECATED = ".*(deprecated|torchao).*"


class Compressible(Protocol):
    """What an app provides for ``kind: compress`` (see apps/intent/compress.py)."""

    metric_name: str  # the held-out metric ``evaluate`` returns, e.g. "accuracy"
    metric_points: float  # one point of the metric: 100 for a fraction (accuracy 0..1)
    higher_is_better: bool

    def load(self, directory: str) -> nn.Module:
        """The inference model of a version: a training checkpoint or a compressed one
        (:func:`load_compressed`), in eval mode."""
        ...

    def metadata(self, directory: str) -> dict[str, Any]:
        """What a predictor needs besides the weights (label names, ...), carried from
        the parent to the child's state file."""
        ...

    def evaluate(self, model: nn.Module) -> float: ...

    def example_inputs(self, batch_size: int) -> Inputs:
        """A typical batch of real inputs, to time the model on."""
        ...

    def calibration_inputs(self, batches: int) -> list[Inputs]:
        """Batches of training inputs for static quantization's activation ranges."""
        ...

    def train_batches(self, batch_size: int, seed: int, rank: int, world: int) -> list[Batch]:
        """This rank's share of the training data, shuffled by ``seed``."""
        ...

    def student(self, teacher: nn.Module, options: dict[str, Any]) -> nn.Module:
        """A smaller model of the same inputs and outputs, deterministic for the same
        teacher and options (a restarted distillation rebuilds it to load its weights)."""
        ...

    def neuron_pairs(self, model: nn.Module) -> list[tuple[nn.Module, str, str]]:
        """(owner, first, second): Linear ``owner.first`` feeds ``owner.second`` through
        an elementwise activation, so its output neurons can be removed from both."""
        ...

    def attention_blocks(self, model: nn.Module) -> list[AttentionHeads]:
        """The model's multi-head attention blocks whose heads may be removed; an empty
        list for a model without attention."""
        ...


@dataclass(frozen=True)
class AttentionHeads:
    """One multi-head attention block, by attribute names on ``owner``: the Linear
    ``query``, ``key`` and ``value`` projections (head ``h`` is output rows
    ``h*d .. (h+1)*d``), the Linear ``out`` projection (head ``h`` is those input
    columns) and the int attribute ``heads`` that holds the head count. The block's
    forward must take the head size from the projections' width over ``heads``."""

    owner: nn.Module
    query: str
    key: str
    value: str
    out: str
    heads: str = "num_heads"


# -- the saved form ---------------------------------------------------------------------
def save_compressed(
    directory: Path, model: nn.Module, meta: dict[str, Any], state: dict[str, Any]
) -> None:
    """Write a compressed model: the pickled module, the steps that made it, and the
    app's metadata. Written to a temporary name and renamed, so a directory that exists
    is complete (a restarted job skips the steps whose output exists)."""
    partial = directory.with_name(directory.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    torch.save(model, partial / MODEL_FILE)
    torch.save(state, partial / STATE_FILE)
    (partial / META_FILE).write_text(json.dumps(meta, default=str))
    if directory.exists():
        raise FileExistsError(f"{directory} exists")
    os.replace(partial, directory)


def is_compressed(directory: str | Path) -> bool:
    return (Path(directory) / MODEL_FILE).is_file()


def load_compressed(directory: str | Path) -> nn.Module:
    """A model written by :func:`save_compressed`, in eval mode. A quantized one also
    switches torch to the quantized engine it was packed for."""
    meta = json.loads((Path(directory) / META_FILE).read_text())
    backend = meta.get("quantized_engine")
    if backend:
        torch.backends.quantized.engine = backend
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_DEPRECATED)
        model = torch.load(Path(directory) / MODEL_FILE, map_location="cpu", weights_only=False)
    if not isinstance(model, nn.Module):
        raise ValueError(f"{directory}/{MODEL_FILE} holds a {type(model).__name__}, not a model")
    return model.eval()


def read_meta(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / META_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def checkpoint_metadata(directory: str | Path) -> dict[str, Any]:
    """A version's state file without its weights and optimizer: the metadata an app
    carries from parent to child (labels, vocabulary, data config, ...)."""
    state = torch.load(Path(directory) / STATE_FILE, map_location="cpu", weights_only=False)
    return {key: value for key, value in state.items() if key not in ("model", "optimizer")}


def check_student_options(options: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = set(options) - set(allowed)
    if unknown:
        takes = " and ".join(repr(name) for name in allowed)
        raise ValueError(f"unknown student options: {sorted(unknown)} (this app takes {takes})")


# -- quantization -----------------------------------------------------------------------
def _big_embeddings(model: nn.Module) -> list[str]:
    """Tables worth quantizing. An EmbeddingBag with a padding_idx stays float: torch's
    int8 bag would average the padding rows in, which the float one leaves out."""
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Embedding | nn.EmbeddingBag)
        and module.num_embeddings >= MIN_QUANTIZED_EMBEDDING_ROWS
        and not (isinstance(module, nn.EmbeddingBag) and module.padding_idx is not None)
    ]


def supported_engines() -> list[str]:
    return list(torch.backends.quantized.supported_engines)


def quantize(model: nn.Module, step: QuantizeStep, calibration: list[Inputs]) -> nn.Module:
    """An int8 copy of ``model`` (see QuantizeStep). Returns a new module."""
    engine = step.backend.value if step.backend is not None else torch.backends.quantized.engine
    if engine not in supported_engines():
        raise ValueError(f"quantize backend {engine!r} is not supported by this torch build")
    torch.backends.quantized.engine = engine
    weights = tq.per_channel_dynamic_qconfig if step.per_channel else tq.default_dynamic_qconfig
    spec: dict[Any, Any] = {nn.Linear: weights}
    if step.smooth_alpha is not None:
        model = smooth(copy.deepcopy(model).eval(), calibration, step.smooth_alpha)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_DEPRECATED)
        if step.method == "dynamic":
            quantized = tq.quantize_dynamic(model.eval(), spec, dtype=torch.qint8, inplace=False)
        else:
            quantized = _quantize_static(model.eval(), engine, calibration)
        if step.embeddings:
            for name in _big_embeddings(quantized):
                _quantize_embedding(quantized, name)
    return quantized.eval()


class _StaticLinear(nn.Module):
    """A Linear whose input is quantized with a range fixed at calibration."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.quant = tq.QuantStub()
        self.linear = linear
        self.dequant = tq.DeQuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dequant(self.linear(self.quant(x)))


def _quantize_static(model: nn.Module, engine: str, calibration: list[Inputs]) -> nn.Module:
    """Post-training static int8 of every Linear: each gets a quant/dequant pair (so the
    rest of the model, attention and norms, stays float), observers record activation
    ranges over the calibration batches, and convert freezes them."""
    if not calibration:
        raise ValueError("static quantization needs calibration batches; the app gave none")
    float_model = copy.deepcopy(model)
    for owner in list(float_model.modules()):
        for name, child in list(owner.named_children()):
            if isinstance(child, nn.Linear):
                setattr(owner, name, _StaticLinear(child))
    qconfig = tq.get_default_qconfig(engine)
    for module in float_model.modules():
        if isinstance(module, _StaticLinear):
            module.qconfig = qconfig
    prepared = tq.prepare(float_model, inplace=False)
    with torch.inference_mode():
        for inputs in calibration:
            prepared(*inputs)
    return tq.convert(prepared, inplace=False)


def _quantize_embedding(model: nn.Module, dotted: str) -> None:
    owner_name, _, attribute = dotted.rpartition(".")
    owner = model.get_submodule(owner_name) if owner_name else model
    table = getattr(owner, attribute)
    table.qconfig = tq.float_qparams_weight_only_qconfig
    kind = nnq.EmbeddingBag if isinstance(table, nn.EmbeddingBag) else nnq.Embedding
    setattr(owner, attribute, kind.from_float(table))


# -- pruning ----------------------------------------------------------------------------
def linear_weights(model: nn.Module) -> list[torch.Tensor]:
    """Every Linear weight of ``model``, float or int8 (dequantized)."""
    weights = []
    for module in model.modules():
        if isinstance(module, nn.Linear):
            weights.append(module.weight.detach())
        elif isinstance(module, nnq.Linear):  # also the dynamic one, its subclass
            weights.append(module.weight().dequantize())
    return weights


def sparsity(model: nn.Module) -> float:
    """Zeros among all Linear weights."""
    weights = linear_weights(model)
    total = sum(w.numel() for w in weights)
    return sum(int((w == 0).sum()) for w in weights) / total if total else 0.0


def task_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for (batch, classes) logits; binary cross-entropy for one logit per
    example with 0/1 labels (a recommender's interaction score)."""
    if logits.dim() == 1:
        return nn.functional.binary_cross_entropy_with_logits(logits, labels.float())
    return nn.functional.cross_entropy(logits, labels)
