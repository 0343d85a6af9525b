"""``python -m raydc.workloads.request_resources``: pass the control plane's autoscaler
request to Ray (``ray.autoscaler.sdk.request_resources``), from a driver on the cluster."""

from __future__ import annotations

import json
import os
import sys

import ray
from ray.autoscaler.sdk import request_resources

ENV_REQUEST = "RAYDC_RESOURCE_REQUEST"


def main() -> int:
    bundles = json.loads(os.environ[ENV_REQUEST])
    ray.init()
    # An empty list clears the request, so idle nodes may scale down.
    request_resources(bundles=bundles)
    print(f"raydc: requested {len(bundles)} bundles from the autoscaler", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
