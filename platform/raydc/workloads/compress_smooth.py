"""Activation smoothing before int8 (SmoothQuant, Xiao et al. 2023), in plain PyTorch.

A transformer's Linear inputs have a few channels far larger than the rest (MiniLM:
up to 30 against a median of 1.8). One int8 scale per input tensor then spends its
range on those few channels and rounds the rest coarsely. Smoothing moves that range
into the weights, which int8 quantizes per output channel anyway: for input channel
``j``, ``s_j = max|x_j|^alpha / max|w_j|^(1 - alpha)`` over calibration batches, the
weight's column ``j`` is multiplied by ``s_j`` and the input by ``1 / s_j``. In float
the product is unchanged; in int8 both sides now have an even range.

The input scaling stays an explicit elementwise multiply (:class:`SmoothedLinear`):
folding it into the layer before would also scale a post-norm model's residual path.
"""

from __future__ import annotations

import torch
from torch import nn

Inputs = tuple[torch.Tensor, ...]

# s is clamped to this range. A channel that stayed (near) zero in calibration, or whose
# weight column is zero, keeps s = 1: dividing it by a tiny s would turn any value it
# takes later into the very outlier smoothing removes.
SCALE_MIN = 1e-4
SCALE_MAX = 1e4
_EPS = 1e-5


class SmoothedLinear(nn.Module):
    """``linear(x * inverse_scale)``, whose ``linear`` holds the scaled weights. The
    inner Linear is what quantization then replaces."""

    inverse_scale: torch.Tensor

    def __init__(self, linear: nn.Linear, inverse_scale: torch.Tensor) -> None:
        super().__init__()
        self.linear = linear
        self.register_buffer("inverse_scale", inverse_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x * self.inverse_scale)


def input_ranges(model: nn.Module, calibration: list[Inputs]) -> dict[str, torch.Tensor]:
    """Each Linear's largest absolute input per channel over the calibration batches."""
    ranges: dict[str, torch.Tensor] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):

            def record(
                _module: nn.Module,
                args: tuple[torch.Tensor, ...],
                kwargs: dict[str, torch.Tensor],
                _out: object,
                name: str = name,
            ) -> None:
                x = (args[0] if args else kwargs["input"]).detach()
                peak = x.abs().reshape(-1, x.shape[-1]).amax(dim=0)
                ranges[name] = torch.maximum(ranges[name], peak) if name in ranges else peak

            hooks.append(module.register_forward_hook(record, with_kwargs=True))
    try:
        with torch.inference_mode():
            for inputs in calibration:
                model(*inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return ranges


def smoothing_scale(input_range: torch.Tensor, weight: torch.Tensor, alpha: float) -> torch.Tensor:
    """``s`` per input channel of a Linear with weights ``weight`` (out, in)."""
    weight_range = weight.detach().abs().amax(dim=0)
    scale = input_range.clamp(min=_EPS) ** alpha / weight_range.clamp(min=_EPS) ** (1 - alpha)
    dead = (input_range < _EPS) | (weight_range < _EPS)
    return torch.where(dead, torch.ones_like(scale), scale.clamp(SCALE_MIN, SCALE_MAX))


def _refuse_shared(model: nn.Module) -> None:
    """Smoothing scales a Linear's weight in place and rewires the attribute it sits in:
    a Linear reachable by two names, or a weight tied to another parameter, would leave
    the other use with scaled weights and unscaled inputs."""
    names: dict[int, list[str]] = {}
    for name, item in [
        *model.named_modules(remove_duplicate=False),
        *model.named_parameters(remove_duplicate=False),
    ]:
        names.setdefault(id(item), []).append(name)
    for module in model.modules():
        if isinstance(module, nn.Linear):
            for shared in (names[id(module)], names[id(module.weight)]):
                if len(shared) > 1:
                    raise ValueError(f"cannot smooth a Linear shared as {shared}")


def smooth(model: nn.Module, calibration: list[Inputs], alpha: float) -> nn.Module:
    """Wrap every Linear of ``model`` (in place) that saw input in calibration in a
    :class:`SmoothedLinear`; returns ``model``. Its float outputs do not change beyond
    rounding. A model that shares a Linear, or a Linear's weight, is refused."""
    if not calibration:
        raise ValueError("smoothing needs calibration batches; the app gave none")
    if not 0 < alpha <= 1:
        raise ValueError(f"smooth_alpha must be in (0, 1], got {alpha}")
    _refuse_shared(model)
    ranges = input_ranges(model, calibration)
    for name, input_range in ranges.items():
        owner_name, _, attribute = name.rpartition(".")
        owner = model.get_submodule(owner_name) if owner_name else model
        linear = getattr(owner, attribute)
        scale = smoothing_scale(input_range, linear.weight, alpha)
        with torch.no_grad():
            linear.weight.mul_(scale)
        setattr(owner, attribute, SmoothedLinear(linear, 1.0 / scale))
    return model
