"""What torch's int8 kernels gain over float on this CPU, for the intent model's Linear
shapes at batch 1 (issue #5).

A dynamic int8 model can be no faster than its Linear layers: this times one Linear of
each shape of a MiniLM layer (384->384 for query, key, value and output; 384->1536 and
1536->384 for the feed-forward block) on the activations of one 15-token utterance, on
one thread, in float and in dynamic int8 under each quantized engine torch offers. The
whole-layer figure weighs the shapes as a layer has them (4, 1, 1). Runs are
interleaved in rounds (float, then each engine) so drift hits all alike; the weights are
hot in cache here, unlike in the whole model. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.ao import quantization as tq

SHAPES = ((384, 384, 4), (384, 1536, 1), (1536, 384, 1))  # (in, out, per layer)


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--runs", type=int, default=20, help="timed runs per round")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    engines = [e for e in ("x86", "fbgemm", "onednn", "qnnpack")
               if e in torch.backends.quantized.supported_engines]  # fmt: skip
    per_shape: dict[str, dict[str, float]] = {}
    for inputs, outputs, _ in SHAPES:
        x = torch.randn(1, args.tokens, inputs)
        linear = nn.Sequential(nn.Linear(inputs, outputs)).eval()
        variants: dict[str, nn.Module] = {"float": linear}
        for engine in engines:
            torch.backends.quantized.engine = engine
            variants[engine] = tq.quantize_dynamic(
                linear, {nn.Linear: tq.per_channel_dynamic_qconfig}, dtype=torch.qint8
            )
        samples: dict[str, list[float]] = {name: [] for name in variants}
        with torch.inference_mode():
            for _ in range(args.rounds):
                for name, module in variants.items():
                    module(x)
                    for _ in range(args.runs):
                        start = time.perf_counter()
                        module(x)
                        samples[name].append((time.perf_counter() - start) * 1e6)
        per_shape[f"{inputs}x{outputs}"] = {
            name: round(statistics.median(values), 1) for name, values in samples.items()
        }
    layer = {
        name: round(sum(per_shape[f"{i}x{o}"][name] * n for i, o, n in SHAPES), 1)
        for name in ["float", *engines]
    }
    print(json.dumps({
        "benchmark": "int8_kernels",
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "tokens": args.tokens,
        "us_per_call_p50": per_shape,
        "us_per_layer": layer,
        "speedup_per_layer": {name: round(layer["float"] / layer[name], 3) for name in engines},
        "speedup_per_shape": {
            shape: {name: round(row["float"] / row[name], 3) for name in engines}
            for shape, row in per_shape.items()
        },
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
