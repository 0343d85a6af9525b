"""``raydc sim``: replay a workload trace through scheduling policies, offline."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from raydc.scheduler.cluster_model import GpuCluster
from raydc.scheduler.replay import POLICY_NAMES, make_policy
from raydc.scheduler.simulator import SimResult, simulate
from raydc.scheduler.traces import TraceFormatError, load_trace

console = Console()
err = Console(stderr=True, soft_wrap=True)
SHOWN_ERRORS = 20
NAMES = POLICY_NAMES


def sim(
    trace: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="trace CSV")],
    nodes: Annotated[int, typer.Option(min=1, help="nodes in the simulated cluster")],
    gpus_per_node: Annotated[int, typer.Option(min=1, help="GPUs per node")],
    cpus_per_node: Annotated[
        float | None, typer.Option(min=0, help="CPUs per node (raydc policy; default: no limit)")
    ] = None,
    policy: Annotated[str, typer.Option(help=f"{' | '.join(NAMES)} | all")] = "all",
    json_out: Annotated[Path | None, typer.Option("--json", help="write results here")] = None,
    skip_bad_rows: Annotated[
        bool, typer.Option(help="replay the good rows when some are bad (each is reported)")
    ] = False,
) -> None:
    """Replay a trace (generic or Philly CSV) through scheduling policies."""
    names = list(NAMES) if policy == "all" else [policy]
    unknown = [name for name in names if name not in NAMES]
    if unknown:
        err.print(f"[red]error[/red] unknown policy {unknown[0]!r}; "
                  f"available: {', '.join(NAMES)}, all")  # fmt: skip
        raise typer.Exit(2)
    try:
        loaded = load_trace(trace)
    except TraceFormatError as error:
        err.print(f"[red]error[/red] {trace}: {error}")
        raise typer.Exit(2) from error
    for line in loaded.errors[:SHOWN_ERRORS]:
        err.print(f"{trace}: {line}")
    if len(loaded.errors) > SHOWN_ERRORS:
        err.print(f"... and {len(loaded.errors) - SHOWN_ERRORS} more bad rows")
    if loaded.errors and not skip_bad_rows:
        err.print(f"[red]error[/red] {len(loaded.errors)} bad rows (--skip-bad-rows to go on)")
        raise typer.Exit(2)
    total = nodes * gpus_per_node
    jobs = [job for job in loaded.jobs if job.gpus <= total]
    if len(jobs) < len(loaded.jobs):
        err.print(f"{len(loaded.jobs) - len(jobs)} jobs need more than the cluster's "
                  f"{total} GPUs and are left out")  # fmt: skip
    results: list[SimResult] = []
    for name in names:
        chosen = make_policy(name, jobs, nodes, gpus_per_node, cpus_per_node)
        result, _ = simulate(jobs, GpuCluster(nodes, gpus_per_node), chosen)
        results.append(result)
    _print_table(results)
    if json_out is not None:
        json_out.write_text(json.dumps([r.as_dict() for r in results], indent=2) + "\n")


def _print_table(results: list[SimResult]) -> None:
    table = Table("POLICY", "JOBS", "AVG JCT h", "MEDIAN JCT h", "P99 JCT h", "AVG WAIT h",
                  "MAKESPAN d", "GPU UTIL", "TENANT SLOWDOWN", "PREEMPTIONS", "WALL s")  # fmt: skip
    for r in results:
        table.add_row(
            r.policy, str(r.jobs), f"{r.avg_jct_s / 3600:.2f}", f"{r.median_jct_s / 3600:.2f}",
            f"{r.p99_jct_s / 3600:.1f}", f"{r.avg_wait_s / 3600:.2f}",
            f"{r.makespan_s / 86400:.1f}", f"{r.gpu_utilization:.1%}",
            f"{r.tenant_slowdown_ratio:.1f}x", str(r.preemptions), f"{r.wall_s:.1f}",
        )  # fmt: skip
    Console(file=sys.stdout, width=160).print(table)
