"""Job states, their legal transitions and why a job ended.

    PENDING --admit--> STARTING --ray running--> RUNNING --> SUCCEEDED | FAILED
       ^                   |                        |
       |                   +--------> FAILED        +--preempt--> PREEMPTED --requeue--> PENDING
       +---- cancel from any non-terminal state --> CANCELLED

A job the cluster lost (its Ray head restarted) is PREEMPTED and requeued, like a job
the scheduler preempts: it resumes from its last checkpoint.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    PENDING = "PENDING"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    PREEMPTED = "PREEMPTED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
ACTIVE_STATUSES = frozenset({JobStatus.STARTING, JobStatus.RUNNING})

_S = JobStatus
LEGAL_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    _S.PENDING: frozenset({_S.STARTING, _S.CANCELLED}),
    _S.STARTING: frozenset({_S.RUNNING, _S.SUCCEEDED, _S.FAILED, _S.PREEMPTED, _S.CANCELLED}),
    _S.RUNNING: frozenset({_S.SUCCEEDED, _S.FAILED, _S.PREEMPTED, _S.CANCELLED}),
    _S.PREEMPTED: frozenset({_S.PENDING, _S.CANCELLED}),
    _S.SUCCEEDED: frozenset(),
    _S.FAILED: frozenset(),
    _S.CANCELLED: frozenset(),
}


class IllegalTransition(Exception):
    def __init__(self, current: JobStatus, target: JobStatus) -> None:
        super().__init__(f"job cannot go from {current} to {target}")
        self.current = current
        self.target = target


def check_transition(current: JobStatus, target: JobStatus) -> None:
    if target not in LEGAL_TRANSITIONS[current]:
        raise IllegalTransition(current, target)


class TerminationReason(StrEnum):
    """Why a job left the running states; decides its final status."""

    COMPLETED = "completed"
    USER_CODE_ERROR = "user_code_error"  # train_loop raised, or the entrypoint cannot import
    SUBMISSION_FAILED = "submission_failed"  # Ray refused the job (bad runtime env, ...)
    CANCELLED_BY_USER = "cancelled_by_user"
    CLUSTER_LOST_JOB = "cluster_lost_job"  # Ray no longer knows the job: head restarted
    # The job reported something the control plane refuses to believe (a checkpoint
    # outside its run directory, a result file too big or malformed).
    INVALID_RESULT = "invalid_result"

    @property
    def final_status(self) -> JobStatus:
        return _FINAL_STATUS[self]


_FINAL_STATUS = {
    TerminationReason.COMPLETED: JobStatus.SUCCEEDED,
    TerminationReason.USER_CODE_ERROR: JobStatus.FAILED,
    TerminationReason.SUBMISSION_FAILED: JobStatus.FAILED,
    TerminationReason.CANCELLED_BY_USER: JobStatus.CANCELLED,
    TerminationReason.CLUSTER_LOST_JOB: JobStatus.PREEMPTED,
    TerminationReason.INVALID_RESULT: JobStatus.FAILED,
}
