"""Every operation of the OpenAPI document, fuzzed as an admin and as a tenant's member:
no 5xx, and every response as the document says (status, content type, headers, body).

Negative cases include requests without a token. Seeded (hypothesis' derandomize), a few
examples per operation and mode, so a run is repeatable and takes seconds;
benchmarks/api_fuzz.py runs the same at scale.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from schemathesis import GenerationMode

from raydc.server.app import create_app
from raydc.settings import Settings
from tests.unit.api_fuzzing import Fixture, Tally, fuzz, operations
from tests.unit.factories import ADMIN_TOKEN

EXAMPLES = 8

# Defects found by the fuzzer in code other issues own: operation -> where it is reported.
# None today; offsets past 2**63-1 were 500s in GET /v1/jobs and /v1/tokens (now bounded).
KNOWN_FAILURES: dict[str, str] = {}


def _settings(home: Path) -> Settings:
    # ray_address: no local head and no jobs user to set up; the reconciler never runs.
    return Settings(home=home, database_url="sqlite://", admin_token=ADMIN_TOKEN,
                    ray_address="http://127.0.0.1:9", max_code_bytes=64 * 1024,
                    max_code_unpacked_bytes=256 * 1024)  # fmt: skip


def _labels() -> list[str]:
    app = create_app(_settings(Path("/nonexistent-raydc-home")), run_reconciler=False)
    paths = app.openapi()["paths"]
    return [f"{method.upper()} {path}" for path, item in paths.items() for method in item]


@pytest.fixture(scope="module")
def fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fixture]:
    app = create_app(_settings(tmp_path_factory.mktemp("fuzz") / "home"), run_reconciler=False)
    with TestClient(app, raise_server_exceptions=False) as client:  # a 5xx is a finding
        yield Fixture.create(client)


@pytest.mark.parametrize(
    "label",
    [
        pytest.param(label, marks=pytest.mark.xfail(strict=False, reason=KNOWN_FAILURES[label]))
        if label in KNOWN_FAILURES else label
        for label in _labels()
    ],
)  # fmt: skip
def test_operation_survives_fuzzing(fixture: Fixture, label: str) -> None:
    operation = operations(fixture.client)[label]
    tally = Tally()
    for role in ("admin", "member"):
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(fixture, operation, role, mode, EXAMPLES, tally)
        if "{" in operation.path:
            fuzz(fixture, operation, role, GenerationMode.POSITIVE, EXAMPLES, tally, real_ids=True)
    assert tally.requests > 0
    distinct = {(f.role, f.failures[:120]): f for f in tally.findings}
    assert not distinct, "\n\n".join(str(f) for f in list(distinct.values())[:5])
