"""The autoscaler request: what runs plus what waits for a larger cluster, as bundles.

``ray.autoscaler.sdk.request_resources`` takes the cluster's whole target (it accounts
for what already runs), so the request holds every running worker too, and shrinks as
the queue drains. It never asks for more than the cluster's node types can hold.
"""

from __future__ import annotations

from collections.abc import Iterable

from raydc.scheduler.model import Shape


def scale_request(
    groups: Iterable[tuple[Shape, int]], largest: tuple[float, float, float]
) -> list[dict[str, float]]:
    """One bundle per worker of each (shape, workers) group, up to ``largest`` in total."""
    total = [0.0, 0.0, 0.0]
    bundles: list[dict[str, float]] = []
    for shape, workers in groups:
        need = shape.times(1)
        bundle = {"cpu": shape.cpu, "gpu": shape.gpu, "memory_gb": shape.memory_gb}
        bundle.update(shape.custom)
        bundle = {k: v for k, v in bundle.items() if v > 0}
        for _ in range(workers):
            if any(total[d] + need[d] > largest[d] for d in range(3)):
                return bundles  # more than the largest cluster holds: ask for that much
            for d in range(3):
                total[d] += need[d]
            if bundle:
                bundles.append(dict(bundle))
    return bundles
