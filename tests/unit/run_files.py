"""Files a job's entrypoint leaves in the artifact store, made here as it would."""

from __future__ import annotations

from raydc.settings import Settings


def run_checkpoint(settings: Settings, job_id: str, *parts: str) -> str:
    """A checkpoint directory inside the job's own run directory (the only place a
    result may name one), with a state file in it."""
    directory = settings.runs_dir.joinpath(job_id, *(parts or ("checkpoint_000000",)))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "state.pt").write_bytes(b"state")
    return str(directory.resolve())
