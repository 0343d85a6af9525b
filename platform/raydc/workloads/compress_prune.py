"""Magnitude pruning, unstructured (weights zeroed) or structured (hidden neurons or
attention heads removed, so layers shrink), and the short fine-tune after it.

Every model pruned here is an app's whole float inference model on the CPU; the app
names what structured pruning may remove (:class:`Compressible`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune

from raydc.specs.compression import PruneStep
from raydc.workloads.compress_ops import AttentionHeads, Compressible, task_loss


def prune_model(model: nn.Module, step: PruneStep, app: Compressible) -> nn.Module:
    """Prune (see PruneStep), fine-tune if asked, and make the pruning permanent."""
    model.train()
    model.requires_grad_(True)
    masked: list[tuple[nn.Module, str]] = []
    if step.method == "unstructured":
        masked = prune_unstructured(model, step.sparsity)
    elif step.target == "heads":
        prune_heads(app.attention_blocks(model), step.sparsity)
    else:
        prune_neurons(app.neuron_pairs(model), step.sparsity)
    finetune(model, app, step.finetune_epochs, step.lr, step.batch_size)
    make_permanent(masked)  # only unstructured pruning leaves masks (zeros kept in training)
    model.requires_grad_(False)
    return model.eval()


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


def prune_heads(blocks: list[AttentionHeads], amount: float) -> int:
    """Remove the ``amount`` fraction of each block's attention heads, those whose value
    rows times output columns have the smallest norm (what a head adds to the residual
    stream). The query, key, value and output projections are replaced by smaller ones,
    the head count lowered, and what the removed heads' value biases added kept in the
    output bias. Returns how many heads were removed."""
    if not blocks:
        raise ValueError("the app names no attention blocks for structured pruning of heads")
    removed = 0
    for block in blocks:
        owner = block.owner
        count = int(getattr(owner, block.heads))
        query, key, value = (getattr(owner, n) for n in (block.query, block.key, block.value))
        out = getattr(owner, block.out)
        linears = (query, key, value, out)
        if not all(isinstance(m, nn.Linear) for m in linears):
            raise ValueError(f"{block.query}/{block.key}/{block.value}/{block.out} must be Linear")
        width = value.out_features
        size = width // count
        if size * count != width or not query.out_features == key.out_features == width:
            # Grouped-query attention (narrower keys) is not handled.
            raise ValueError(f"{block.query}/{block.key}/{block.value} rows do not split "
                             f"into {count} heads of equal width")  # fmt: skip
        keep_count = max(1, round(count * (1 - amount)))
        weight = value.weight.detach()
        rows = weight.reshape(count, -1).norm(dim=1)
        columns = out.weight.detach().reshape(out.out_features, count, size).transpose(0, 1)
        score = rows * columns.flatten(1).norm(dim=1)
        kept = torch.sort(torch.topk(score, keep_count).indices).values
        index = (kept[:, None] * size + torch.arange(size, device=kept.device)).flatten()
        dropped = torch.ones(width, dtype=torch.bool, device=weight.device)
        dropped[index] = False
        smaller_out = _columns_of(out, index)
        if value.bias is not None:
            # Attention weights sum to 1, so a head passes its value bias through
            # unchanged: fold that constant into the output bias; it is not lost.
            if smaller_out.bias is None:
                smaller_out.bias = nn.Parameter(weight.new_zeros(out.out_features))
            with torch.no_grad():
                smaller_out.bias.add_(out.weight[:, dropped] @ value.bias[dropped])
        for name, linear in ((block.query, query), (block.key, key), (block.value, value)):
            setattr(owner, name, _rows_of(linear, index))
        setattr(owner, block.out, smaller_out)
        setattr(owner, block.heads, keep_count)
        removed += count - keep_count
    return removed


def _rows_of(linear: nn.Linear, keep: torch.Tensor) -> nn.Linear:
    smaller = nn.Linear(linear.in_features, len(keep), bias=linear.bias is not None,
                        device=linear.weight.device, dtype=linear.weight.dtype)  # fmt: skip
    with torch.no_grad():
        smaller.weight.copy_(linear.weight[keep])
        if linear.bias is not None:
            smaller.bias.copy_(linear.bias[keep])
    return smaller


def _columns_of(linear: nn.Linear, keep: torch.Tensor) -> nn.Linear:
    smaller = nn.Linear(len(keep), linear.out_features, bias=linear.bias is not None,
                        device=linear.weight.device, dtype=linear.weight.dtype)  # fmt: skip
    with torch.no_grad():
        smaller.weight.copy_(linear.weight[:, keep])
        if linear.bias is not None:
            smaller.bias.copy_(linear.bias)
    return smaller


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
