"""The compress job spec: the apps' shipped compress.yaml files, defaults and refusals."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from raydc.specs.compression import DistillStep, PruneStep, QuantizeStep
from raydc.specs.jobs import CompressSpec, parse_job_spec
from tests.conftest import REPO


@pytest.mark.parametrize("app", ["intent", "sentiment", "recsys"])
def test_every_app_ships_a_compress_spec_ending_in_dynamic_int8(app: str) -> None:
    spec = parse_job_spec(yaml.safe_load((REPO / "apps" / app / "compress.yaml").read_text()))
    assert isinstance(spec, CompressSpec)
    assert spec.code.app == app and spec.model == app
    assert spec.entrypoint == f"{app}.compress:Compression"
    last = spec.steps[-1]
    assert isinstance(last, QuantizeStep) and last.method == "dynamic"


def compress(**changes: Any) -> CompressSpec:
    body = {"kind": "compress", "name": "c", "code": {"app": "intent"},
            "entrypoint": "intent.compress:Compression", "model": "intent:2",
            "steps": [{"type": "prune", "sparsity": 0.5}]}  # fmt: skip
    spec = parse_job_spec({**body, **changes})
    assert isinstance(spec, CompressSpec)
    return spec


def test_defaults() -> None:
    spec = compress(steps=[{"type": "distill"}, {"type": "prune", "sparsity": 0.3},
                           {"type": "quantize"}])  # fmt: skip
    distill, prune, quantize = spec.steps
    assert isinstance(distill, DistillStep) and (distill.temperature, distill.alpha) == (2.0, 0.5)
    assert isinstance(prune, PruneStep) and prune.method == "unstructured"
    assert prune.target is None  # structured pruning removes neurons unless told heads
    assert prune.finetune_epochs == 0
    assert isinstance(quantize, QuantizeStep) and quantize.method == "dynamic"
    assert quantize.per_channel and quantize.embeddings and quantize.backend is None
    assert quantize.smooth_alpha is None  # smoothing is asked for, not assumed
    assert spec.gate.max_accuracy_drop == 1.0 and spec.gate.min_speedup is None


@pytest.mark.parametrize(
    ("changes", "location", "message"),
    [
        ({"steps": [{"type": "quantize"}, {"type": "quantize"}]}, ("steps",), "must be the last"),
        ({"steps": [{"type": "quantize", "backend": "tpu"}]}, ("backend",), "x86"),
        ({"steps": [{"type": "prune", "sparsity": 0}]}, ("sparsity",), "greater than 0"),
        ({"steps": [{"type": "prune", "sparsity": 0.5, "method": "random"}]}, ("method",), ""),
        (
            {"steps": [{"type": "prune", "sparsity": 0.5, "method": "random", "target": "heads"}]},
            ("method",),
            "'unstructured' or 'structured'",
        ),  # one error: the method's
        (
            {"steps": [{"type": "prune", "sparsity": 0.5, "target": "heads"}]},
            ("target",),
            "'heads' needs method: structured",
        ),
        (
            {
                "steps": [
                    {"type": "prune", "sparsity": 0.5, "method": "structured", "target": "channels"}
                ]
            },
            ("target",),
            "'neurons' or 'heads'",
        ),
        ({"steps": [{"type": "distill", "alpha": 2}]}, ("alpha",), "less than or equal to 1"),
        ({"steps": [{"type": "quantize", "smooth_alpha": 0}]}, ("smooth_alpha",), "greater than 0"),
        (
            {"steps": [{"type": "quantize", "smooth_alpha": 1.5}]},
            ("smooth_alpha",),
            "less than or equal to 1",
        ),
        ({"gate": {"min_speedup": 0}}, ("min_speedup",), "greater than 0"),
        ({"model": "intent:0"}, ("model",), "pattern"),
        ({"model": "intent:latest"}, ("model",), "pattern"),
        ({"steps": [{"type": "prune", "sparsity": 0.5, "extra": 1}]}, ("extra",), "not permitted"),
    ],
)
def test_bad_specs_name_the_field(changes: dict[str, Any], location: tuple[str, ...],
                                  message: str) -> None:  # fmt: skip
    with pytest.raises(ValidationError) as error:
        compress(**changes)
    [problem] = error.value.errors()
    assert problem["loc"][-len(location) :] == location
    assert message in problem["msg"]
