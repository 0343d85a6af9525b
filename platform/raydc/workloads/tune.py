"""The tune harness: a Ray Tune search whose every trial is a Ray Train run.

Each trial runs the user's train loop as a TorchTrainer of the spec's (per-trial) size.
What the workers ``report`` goes to Tune through :class:`ReportToTune`, checkpoint
included, so Tune holds every trial's checkpoints: schedulers compare trials on the
metric, PBT continues a trial from another's checkpoint, and a resumed search restarts
each unfinished trial from its last one.

The search is named by the job id under the runs dir; a later attempt of the job (after a
preemption, or a control plane that lost it) resumes it: finished trials stay finished.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray import tune
from ray.train import Checkpoint, UserCallback

# Train V2's trainer and configs, which `ray.train` exports at run time; imported from
# where they live so that type checking sees V2's signatures.
from ray.train.v2.api.config import CheckpointConfig, FailureConfig, RunConfig
from ray.train.v2.torch.torch_trainer import TorchTrainer
from ray.tune import ResultGrid, Tuner
from ray.util.queue import Queue

from raydc.specs.jobs import TuneSpec
from raydc.workloads.entrypoints import resolve_entrypoint
from raydc.workloads.protocol import ENV_INITIAL_CHECKPOINT, read_result
from raydc.workloads.train import scaling_config
from raydc.workloads.tune_progress import ProgressFile, plain, user_metrics
from raydc.workloads.tune_space import param_space, tune_config

# A trial's own process only waits on its Train run, whose workers hold the trial's
# resources. Tune cannot start a trial that reserves nothing, so it reserves one byte.
_TRIAL_DRIVER_RESOURCES = tune.PlacementGroupFactory([{"memory": 1}])


class TuneFailed(Exception):
    """The search ended without a model to show for it."""


class ReportToTune(UserCallback):
    """Runs in the Train controller: hands each report (rank 0's metrics and the
    checkpoint's path) to the trial's driver, and waits until the driver has handed it
    to Tune, so the Train run never deletes a checkpoint Tune is still copying."""

    def __init__(self, reports: Queue, acks: Queue) -> None:
        self.reports = reports
        self.acks = acks

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]],
                     checkpoint: Checkpoint | None) -> None:  # fmt: skip
        path = checkpoint.path if checkpoint is not None else None
        self.reports.put({"metrics": dict(metrics[0]), "checkpoint": path})
        self.acks.get()


def _segment_name(trial_id: str, start: tune.Checkpoint | None) -> str:
    # A Train run resumes from its own latest checkpoint when one exists under its name,
    # so a trial that starts over from a Tune checkpoint (resumed, or PBT's exploit of
    # another trial) needs a run of its own, named after that checkpoint.
    if start is None:
        return trial_id
    return f"{trial_id}-{hashlib.sha256(start.path.encode()).hexdigest()[:10]}"


def trial_function(spec: TuneSpec, runs_dir: Path) -> Callable[[dict[str, Any]], None]:
    """The function Tune runs for each trial."""
    train_loop = resolve_entrypoint(spec.entrypoint)  # fails the job now if it cannot import
    train_runs = runs_dir / "train-runs"

    def run_trial(config: dict[str, Any]) -> None:
        start = tune.get_checkpoint()
        reports: Queue = Queue(maxsize=1, actor_options={"num_cpus": 0})
        acks: Queue = Queue(maxsize=1, actor_options={"num_cpus": 0})
        initial = {ENV_INITIAL_CHECKPOINT: start.path} if start is not None else {}
        trainer = TorchTrainer(
            train_loop_per_worker=train_loop,
            train_loop_config=config,
            # ray.train's ScalingConfig is V2's at run time; mypy sees V1's.
            scaling_config=scaling_config(spec.resources),  # type: ignore[arg-type]
            run_config=RunConfig(
                name=_segment_name(tune.get_context().get_trial_id(), start),
                storage_path=str(train_runs),
                # Restart the trial's worker group from its latest checkpoint this often.
                failure_config=FailureConfig(max_failures=spec.max_retries),
                # Tune keeps the trial's checkpoints; the Train run needs only its latest.
                checkpoint_config=CheckpointConfig(num_to_keep=1),
                callbacks=[ReportToTune(reports, acks)],
                worker_runtime_env={"env_vars": initial},
            ),
        )
        failure: list[BaseException] = []

        def fit() -> None:
            try:
                trainer.fit()
            except BaseException as error:  # raised again in the trial's own thread below
                failure.append(error)
            finally:
                reports.put(None)

        thread = threading.Thread(target=fit, name="train-run", daemon=True)
        thread.start()
        while (item := reports.get()) is not None:
            path = item["checkpoint"]
            tune.report(item["metrics"], checkpoint=tune.Checkpoint(path) if path else None)
            acks.put(True)
        thread.join()
        if failure:
            raise failure[0]

    return run_trial


# How often Tune saves the search's state (which trials ended, the searcher's and the
# scheduler's state): what a preempted search resumes from. Tune's default, at least 10 s,
# would lose more; the state of a search of a few hundred trials saves in milliseconds.
_STATE_SAVE_PERIOD_S = "2"


def build_tuner(spec: TuneSpec, job_id: str, runs_dir: Path, progress: Path) -> Tuner:
    experiment = runs_dir / job_id
    # Read by Tune's controller when the Tuner starts; this process runs only this search.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", _STATE_SAVE_PERIOD_S)
    trainable = tune.with_resources(trial_function(spec, experiment), _TRIAL_DRIVER_RESOURCES)
    if Tuner.can_restore(str(experiment)):
        print(f"raydc: resuming the search in {experiment}", flush=True)
        return Tuner.restore(str(experiment), trainable=trainable, resume_errored=True)
    return Tuner(
        trainable,
        param_space=param_space(spec),
        tune_config=tune_config(spec),
        run_config=tune.RunConfig(
            name=job_id,
            storage_path=str(runs_dir),
            # Worker failures are retried inside the trial (Train's FailureConfig above);
            # a trial that still fails stays failed, and the search goes on without it.
            failure_config=tune.FailureConfig(max_failures=0),
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=spec.checkpoint.num_to_keep,
                checkpoint_score_attribute=spec.metric,
                checkpoint_score_order=spec.mode,
            ),
            callbacks=[ProgressFile(progress)],
        ),
    )


def _better(mode: str) -> Callable[[float, float], bool]:
    return (lambda a, b: a > b) if mode == "max" else (lambda a, b: a < b)


def best_checkpoint(grid: ResultGrid, metric: str, mode: str) -> tuple[Any, tune.Checkpoint, dict]:
    """The trial result and checkpoint with the best ``metric`` over every trial's kept
    checkpoints, with the metrics reported along with it."""
    better = _better(mode)
    best: tuple[Any, tune.Checkpoint, dict] | None = None
    for index in range(len(grid)):
        result = grid[index]
        for checkpoint, metrics in result.best_checkpoints or []:
            value = metrics.get(metric)
            if not isinstance(value, int | float) or not math.isfinite(value):
                continue
            if best is None or better(value, best[2][metric]):
                best = (result, checkpoint, metrics)
    if best is None:
        raise TuneFailed(
            f"no trial reported a checkpoint with the metric '{metric}': the train loop must "
            f"report '{metric}' along with its state"
        )
    return best


def run_tune(spec: TuneSpec, job_id: str, runs_dir: Path, progress: Path) -> dict[str, Any]:
    grid = build_tuner(spec, job_id, runs_dir, progress).fit()
    trials = (read_result(progress) or {}).get("trials", [])
    if len(grid) == 0:
        raise TuneFailed("the search ran no trial")
    if grid.num_errors == len(grid):
        first = next((t.get("error") for t in trials if t.get("error")), None)
        raise TuneFailed(f"all {len(grid)} trials failed; the first: {first or grid.errors[0]}")
    result, checkpoint, metrics = best_checkpoint(grid, spec.metric, spec.mode)
    trial_id = Path(result.path).name  # trials are stored under their id
    return {
        "metrics": user_metrics(metrics),
        "checkpoint_path": checkpoint.path,
        "trials": trials,
        "best_trial": {
            "id": trial_id,
            "config": plain(result.config),
            "metrics": user_metrics(result.metrics or {}),
        },
    }
