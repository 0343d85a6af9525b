"""The API fuzzed at scale: every operation of the OpenAPI document, as an admin and as a
tenant's member, schema-valid and schema-violating requests (schemathesis, seeded), in
process against the ASGI app (no Ray). Counts server errors (5xx) and responses that
break the document (status, content type, headers, body schema). Prints JSON.
Target (issue #18): >= 30,000 requests, 0 server errors, 0 schema violations.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.unit.api_fuzzing: the suite's fuzzer, at scale here

from fastapi.testclient import TestClient  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402

from raydc.server.app import create_app  # noqa: E402
from raydc.settings import Settings  # noqa: E402
from tests.unit.api_fuzzing import Fixture, Tally, fuzz, operations  # noqa: E402
from tests.unit.factories import ADMIN_TOKEN  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=250, help="per operation, role, mode")
    args = parser.parse_args()
    tally = Tally()
    with tempfile.TemporaryDirectory() as scratch:
        settings = Settings(home=Path(scratch) / "home", admin_token=ADMIN_TOKEN,
                            ray_address="http://127.0.0.1:9", max_code_bytes=64 * 1024,
                            max_code_unpacked_bytes=256 * 1024)  # fmt: skip
        start = time.monotonic()
        app = create_app(settings, run_reconciler=False)
        with TestClient(app, raise_server_exceptions=False) as client:  # a 500, not a raise
            fixture = Fixture.create(client)
            found = operations(client)
            per_operation: dict[str, int] = {}
            for label, operation in found.items():
                before = tally.requests
                for role in ("admin", "member"):
                    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                        fuzz(fixture, operation, role, mode, args.examples, tally)
                    if "{" in operation.path:
                        fuzz(fixture, operation, role, GenerationMode.POSITIVE, args.examples,
                             tally, real_ids=True)  # fmt: skip
                per_operation[label] = tally.requests - before
        seconds = time.monotonic() - start
    distinct = {(f.operation, f.role, f.failures[:120]): f for f in tally.findings}
    print(json.dumps({
        "benchmark": "api_fuzz", "database": "sqlite (file)", "examples": args.examples,
        "operations": len(found), "requests": tally.requests, "seconds": round(seconds, 1),
        "requests_per_s": round(tally.requests / seconds, 1),
        "statuses": dict(sorted(tally.statuses.items())),
        "server_errors": tally.server_errors,
        "schema_violations": sum(1 for f in tally.findings if f.status < 500),
        "findings": len(tally.findings),
        "distinct_findings": [str(f) for f in list(distinct.values())[:20]],
        "requests_per_operation": per_operation,
        "target": {"requests": 30000, "server_errors": 0, "schema_violations": 0},
    }))  # fmt: skip


if __name__ == "__main__":
    main()
