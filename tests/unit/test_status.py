import itertools

import pytest

from raydc.specs.status import (
    LEGAL_TRANSITIONS,
    TERMINAL_STATUSES,
    IllegalTransition,
    JobStatus,
    TerminationReason,
    check_transition,
)


def test_every_status_has_a_row() -> None:
    assert set(LEGAL_TRANSITIONS) == set(JobStatus)


def test_terminal_statuses_go_nowhere() -> None:
    for status in TERMINAL_STATUSES:
        assert LEGAL_TRANSITIONS[status] == frozenset()
        for target in JobStatus:
            with pytest.raises(IllegalTransition):
                check_transition(status, target)


def test_every_non_terminal_status_can_be_cancelled() -> None:
    for status in set(JobStatus) - TERMINAL_STATUSES:
        check_transition(status, JobStatus.CANCELLED)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (JobStatus.PENDING, JobStatus.RUNNING),
        (JobStatus.PENDING, JobStatus.SUCCEEDED),
        (JobStatus.RUNNING, JobStatus.STARTING),
        (JobStatus.RUNNING, JobStatus.PENDING),
        (JobStatus.PREEMPTED, JobStatus.RUNNING),
    ],
)
def test_illegal_moves_are_refused(current: JobStatus, target: JobStatus) -> None:
    with pytest.raises(IllegalTransition, match=f"from {current} to {target}"):
        check_transition(current, target)


def test_the_happy_path_is_legal() -> None:
    path = [JobStatus.PENDING, JobStatus.STARTING, JobStatus.RUNNING, JobStatus.SUCCEEDED]
    for current, target in itertools.pairwise(path):
        check_transition(current, target)


def test_preempted_jobs_requeue() -> None:
    check_transition(JobStatus.RUNNING, JobStatus.PREEMPTED)
    check_transition(JobStatus.PREEMPTED, JobStatus.PENDING)


def test_termination_reasons_map_to_final_statuses() -> None:
    assert TerminationReason.COMPLETED.final_status is JobStatus.SUCCEEDED
    assert TerminationReason.USER_CODE_ERROR.final_status is JobStatus.FAILED
    assert TerminationReason.CANCELLED_BY_USER.final_status is JobStatus.CANCELLED
    assert TerminationReason.CLUSTER_LOST_JOB.final_status is JobStatus.PREEMPTED
    assert {r.final_status for r in TerminationReason} <= set(JobStatus)
