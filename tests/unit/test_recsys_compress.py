"""The recsys app's compression interface, without Ray (see compress_checks.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit import compress_checks
from tests.unit import test_recsys_app as trained_app

# The trained checkpoint of the app's own tests (module-scoped fixtures).
train_module, trained = trained_app.train_module, trained_app.trained
checkpoint_dir = trained_app.checkpoint_dir

REQUESTS = [{"user": 3, "k": 5}, {"user": 11, "candidates": [1, 2, 3, 4]}]


@pytest.fixture
def app() -> Any:
    from recsys.compress import Compression

    return Compression({})


def test_int8_serves_through_the_predictor_by_scoring_pairs(
    app: Any,
    checkpoint_dir: str,
    tmp_path: Path,
) -> None:
    from recsys.serve import Predictor

    answers = compress_checks.quantized_version_serves(
        app, checkpoint_dir, tmp_path / "int8", Predictor, REQUESTS, max_drop=0.05
    )
    assert Predictor(str(tmp_path / "int8")).pairwise and not Predictor(checkpoint_dir).pairwise
    assert len(answers[0]["items"]) == 5 and sorted(answers[1]["items"]) == [1, 2, 3, 4]


def test_a_narrower_student_learns_from_the_teacher(
    app: Any,
    checkpoint_dir: str,
) -> None:
    student, hit_rate = compress_checks.student_learns(
        app, checkpoint_dir, {}, epochs=2, batch_size=1024
    )
    assert student.embed_dim == 8
    assert hit_rate > 0.2  # ranking the held-out item among 100 at random: 0.1


def test_structured_pruning(app: Any, checkpoint_dir: str) -> None:
    child = compress_checks.structured_pruning_shrinks(app, checkpoint_dir, batch_size=1024)
    assert child.mlp_in.out_features == child.mlp_hidden.in_features == 16
