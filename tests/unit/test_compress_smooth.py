"""Activation smoothing before int8 (raydc.workloads.compress_smooth), on small Linears."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.ao import quantization as tq

from raydc.workloads.compress_smooth import SmoothedLinear, input_ranges, smooth, smoothing_scale

IN, OUT, OUTLIER = 64, 32, 7


def outlier_batches(count: int = 4, seed: int = 0) -> list[tuple[torch.Tensor]]:
    """Inputs like a transformer's: one channel 40x larger than the rest."""
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(count):
        x = torch.randn(16, 5, IN, generator=generator)
        x[..., OUTLIER] *= 40
        batches.append((x,))
    return batches


def two_layers() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(IN, OUT), nn.GELU(), nn.Linear(OUT, 4)).eval()


def test_input_ranges_are_each_linears_peak_per_channel() -> None:
    model = two_layers()
    batches = outlier_batches()
    ranges = input_ranges(model, batches)
    assert set(ranges) == {"0", "2"}
    expected = torch.stack([x.abs().amax(dim=(0, 1)) for (x,) in batches]).amax(dim=0)
    assert torch.equal(ranges["0"], expected)
    assert int(ranges["0"].argmax()) == OUTLIER
    assert ranges["2"].shape == (OUT,)
    assert not model[0]._forward_hooks  # the hooks are gone again


def test_the_scale_is_the_smoothquant_formula_and_clamped() -> None:
    weight = torch.tensor([[1.0, -4.0, 0.0], [-2.0, 1.0, 0.0]])
    peak = torch.tensor([9.0, 1.0, 0.0])
    scale = smoothing_scale(peak, weight, alpha=0.5)
    assert scale[0] == pytest.approx(9.0**0.5 / 2.0**0.5)
    assert scale[1] == pytest.approx(1.0 / 4.0**0.5)
    assert torch.equal(smoothing_scale(peak, weight, alpha=1.0)[:2], torch.tensor([9.0, 1.0]))
    # A channel never seen non-zero, or a zero weight column, is left alone: s = 1.
    assert float(scale[2]) == 1.0
    assert float(smoothing_scale(torch.tensor([0.0, 5.0]), torch.ones(2, 2), 0.8)[0]) == 1.0
    assert float(smoothing_scale(torch.tensor([5.0]), torch.zeros(2, 1), 0.8)[0]) == 1.0
    huge = smoothing_scale(torch.tensor([1e12]), torch.tensor([[1e-3]]), alpha=1.0)
    assert float(huge[0]) == 1e4  # clamped


def test_smoothing_leaves_the_float_outputs_as_they_were() -> None:
    model = two_layers()
    batches = outlier_batches()
    with torch.inference_mode():
        before = [model(x) for (x,) in batches]
    smooth(model, batches, alpha=0.8)
    assert isinstance(model[0], SmoothedLinear) and isinstance(model[2], SmoothedLinear)
    with torch.inference_mode():
        for (x,), expected in zip(batches, before, strict=True):
            torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-5)


def test_smoothing_cuts_the_int8_error_of_an_outlier_channel() -> None:
    calibration, held_out = outlier_batches(4, seed=0), outlier_batches(4, seed=1)

    def int8_error(alpha: float | None) -> float:
        model = two_layers()
        with torch.inference_mode():
            expected = [model(x) for (x,) in held_out]
        if alpha is not None:
            smooth(model, calibration, alpha)
        spec = {nn.Linear: tq.per_channel_dynamic_qconfig}
        quantized = tq.quantize_dynamic(model, spec, dtype=torch.qint8)
        with torch.inference_mode():
            pairs = zip(held_out, expected, strict=True)
            errors = [(quantized(x) - y).pow(2).mean() for (x,), y in pairs]
        return float(torch.stack(errors).mean())

    plain, smoothed = int8_error(None), int8_error(0.8)
    assert smoothed < plain / 2, (plain, smoothed)


def test_a_linear_called_with_a_keyword_input_is_recorded() -> None:
    class Keyword(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(IN, OUT)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(input=x)

    [(x,)] = outlier_batches(1)
    assert torch.equal(input_ranges(Keyword(), [(x,)])["linear"], x.abs().amax(dim=(0, 1)))


def test_a_shared_linear_or_tied_weight_is_refused() -> None:
    shared = two_layers()
    shared.add_module("again", shared[0])  # one Linear under two names
    with pytest.raises(ValueError, match="shared as"):
        smooth(shared, outlier_batches(1), alpha=0.5)
    tied = nn.Sequential(nn.Linear(IN, IN), nn.Linear(IN, IN))
    tied[1].weight = tied[0].weight
    before = tied[0].weight.detach().clone()
    with pytest.raises(ValueError, match="shared as"):
        smooth(tied, outlier_batches(1), alpha=0.5)
    assert torch.equal(tied[0].weight, before)  # refused before touching anything


def test_smoothing_needs_calibration_and_a_sane_alpha() -> None:
    with pytest.raises(ValueError, match="calibration batches"):
        smooth(two_layers(), [], alpha=0.5)
    with pytest.raises(ValueError, match="smooth_alpha"):
        smooth(two_layers(), outlier_batches(1), alpha=0.0)
