"""The compression steps themselves, in plain PyTorch: quantize, prune, fine-tune, and
the saved form of a compressed model. No Ray here; ``compress.py`` runs these in a
worker and ``compress_distill.py`` trains students.

An app opts in with one object (:class:`Compressible`) that says how to load a model
version, evaluate it, feed it, and build a student. Every model handled here is the
app's whole inference model (``model(*inputs) -> logits``), on the CPU.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.ao import quantization as tq
from torch.ao.nn import quantized as nnq
from torch.nn.utils import prune

from raydc.specs.compression import PruneStep, QuantizeStep

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
    import copy

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


def prune_unstructured(model: nn.Module, amount: float) -> list[tuple[nn.Module, str]]:
    """Zero the ``amount`` smallest-magnitude weights over all Linear layers together.

    Leaves torch's pruning masks in place (a fine-tune keeps the zeros at zero); call
    :func:`make_permanent` with the returned list to fold them into the weights.
    """
    targets: list[tuple[nn.Module, str]] = [
        (m, "weight") for m in model.modules() if isinstance(m, nn.Linear)
    ]
    if not targets:
        raise ValueError("the model has no float Linear layer to prune (an int8 one cannot be)")
    prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=amount)
    return targets


def make_permanent(targets: list[tuple[nn.Module, str]]) -> None:
    for module, name in targets:
        prune.remove(module, name)


def prune_neurons(pairs: list[tuple[nn.Module, str, str]], amount: float) -> int:
    """Remove the ``amount`` fraction of each pair's hidden neurons with the smallest
    weight norm (rows of the first Linear times columns of the second): both layers are
    replaced by smaller ones. Returns how many neurons were removed."""
    if not pairs:
        raise ValueError("the app names no layer pairs for structured pruning")
    removed = 0
    for owner, first_name, second_name in pairs:
        first, second = getattr(owner, first_name), getattr(owner, second_name)
        if not isinstance(first, nn.Linear) or not isinstance(second, nn.Linear):
            raise ValueError(f"{first_name}/{second_name} must both be Linear layers")
        width = first.out_features
        keep_count = max(1, round(width * (1 - amount)))
        score = first.weight.detach().norm(dim=1) * second.weight.detach().norm(dim=0)
        keep = torch.sort(torch.topk(score, keep_count).indices).values
        setattr(owner, first_name, _rows_of(first, keep))
        setattr(owner, second_name, _columns_of(second, keep))
        removed += width - keep_count
    return removed


def _rows_of(linear: nn.Linear, keep: torch.Tensor) -> nn.Linear:
    smaller = nn.Linear(linear.in_features, len(keep), bias=linear.bias is not None)
    with torch.no_grad():
        smaller.weight.copy_(linear.weight[keep])
        if linear.bias is not None:
            smaller.bias.copy_(linear.bias[keep])
    return smaller


def _columns_of(linear: nn.Linear, keep: torch.Tensor) -> nn.Linear:
    smaller = nn.Linear(len(keep), linear.out_features, bias=linear.bias is not None)
    with torch.no_grad():
        smaller.weight.copy_(linear.weight[:, keep])
        if linear.bias is not None:
            smaller.bias.copy_(linear.bias)
    return smaller


def prune_model(model: nn.Module, step: PruneStep, app: Compressible) -> nn.Module:
    """Prune (see PruneStep), fine-tune if asked, and make the pruning permanent."""
    model.train()
    model.requires_grad_(True)
    if step.method == "unstructured":
        targets = prune_unstructured(model, step.sparsity)
        finetune(model, app, step.finetune_epochs, step.lr, step.batch_size)
        make_permanent(targets)
    else:
        prune_neurons(app.neuron_pairs(model), step.sparsity)
        finetune(model, app, step.finetune_epochs, step.lr, step.batch_size)
    model.requires_grad_(False)
    return model.eval()


def task_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for (batch, classes) logits; binary cross-entropy for one logit per
    example with 0/1 labels (a recommender's interaction score)."""
    if logits.dim() == 1:
        return nn.functional.binary_cross_entropy_with_logits(logits, labels.float())
    return nn.functional.cross_entropy(logits, labels)


def finetune(model: nn.Module, app: Compressible, epochs: int, lr: float, batch_size: int) -> None:
    """Cross-entropy on the app's training data; pruning masks, if any, stay applied."""
    if epochs == 0:
        return
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for epoch in range(1, epochs + 1):
        for inputs, labels in app.train_batches(batch_size, seed=epoch, rank=0, world=1):
            optimizer.zero_grad()
            loss = task_loss(model(*inputs), labels)
            loss.backward()
            optimizer.step()
    model.eval()
