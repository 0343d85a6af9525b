"""What Ray Train does on its own reaches the job's events, each event once."""

from __future__ import annotations

from pathlib import Path

from raydc.workloads.protocol import read_result
from raydc.workloads.run_events import RunEvents


def test_a_failure_and_a_resize_are_appended_in_order(tmp_path: Path) -> None:
    path = tmp_path / "progress.json"
    events = RunEvents(path)
    two = [{"epoch": 1}, {"epoch": 1}]
    events.after_report(None, two, None)
    events.after_report(None, two, None)
    assert read_result(path) is None  # nothing happened yet
    events.after_exception(None, {1: RuntimeError("node lost\ntraceback line")})
    events.after_report(None, [{"epoch": 3}], None)
    events.after_report(None, [{"epoch": 4}], None)
    recorded = (read_result(path) or {})["events"]
    assert [(e["seq"], e["reason"]) for e in recorded] == [
        (1, "worker_failed"),
        (2, "resized_by_ray"),
    ]
    assert recorded[0]["message"] == "rank 1: RuntimeError: node lost"
    assert recorded[1]["message"] == "the worker group runs 1 workers (was 2)"


def test_a_requeued_attempt_continues_the_numbering(tmp_path: Path) -> None:
    path = tmp_path / "progress.json"
    RunEvents(path).after_exception(None, {0: ValueError("first attempt")})
    later = RunEvents(path)  # the next attempt's driver
    later.after_exception(None, {0: ValueError("second attempt")})
    recorded = (read_result(path) or {})["events"]
    assert [e["seq"] for e in recorded] == [1, 2]
    assert recorded[1]["message"] == "rank 0: ValueError: second attempt"
