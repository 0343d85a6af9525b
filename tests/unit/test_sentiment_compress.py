"""The sentiment app's compression interface, without Ray (see compress_checks.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit import compress_checks
from tests.unit import test_sentiment_app as trained_app

# The trained checkpoint of the app's own tests (module-scoped fixtures).
train_module = trained_app.train_module
sentiment_checkpoint = trained_app.sentiment_checkpoint

HEADLINES = ["Apex Bank raises full-year guidance", "Orbit Motors misses estimates"]


@pytest.fixture
def app() -> Any:
    from sentiment.compress import Compression

    return Compression({})


def test_int8_serves_through_the_predictor(
    app: Any, sentiment_checkpoint: tuple[str, dict[str, Any]], tmp_path: Path
) -> None:
    from sentiment.serve import Predictor

    parent_dir, _ = sentiment_checkpoint
    answers = compress_checks.quantized_version_serves(
        app, parent_dir, tmp_path / "int8", Predictor, HEADLINES, max_drop=0.02
    )
    assert answers == Predictor(parent_dir).predict(HEADLINES)


def test_a_half_width_student_learns_from_the_teacher(
    app: Any, sentiment_checkpoint: tuple[str, dict[str, Any]]
) -> None:
    student, accuracy = compress_checks.student_learns(app, sentiment_checkpoint[0], {}, epochs=3)
    assert student.embedding.embedding_dim == 32 and accuracy >= 0.7  # chance is 1/3
    with pytest.raises(ValueError, match="unknown student options: \\['layers'\\]"):
        app.student(app.load(sentiment_checkpoint[0]), {"layers": 2})


def test_structured_pruning(app: Any, sentiment_checkpoint: tuple[str, dict[str, Any]]) -> None:
    child = compress_checks.structured_pruning_shrinks(app, sentiment_checkpoint[0])
    assert child.hidden.out_features == 32


def test_the_app_takes_no_config() -> None:
    from sentiment.compress import Compression

    with pytest.raises(ValueError, match="unknown config keys: \\['x'\\]"):
        Compression({"x": 1})
