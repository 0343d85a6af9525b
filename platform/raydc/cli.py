"""The ``raydc`` command line. Everything but ``server`` talks to the REST API via the SDK."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.table import Table

from raydc import cli_base
from raydc.admin_cli import tenants_app, tokens_app
from raydc.cli_base import console, err, fail, print_json, status_text
from raydc.client import TERMINAL, ApiError, Client
from raydc.cluster_cli import cluster_app
from raydc.deploy_cli import deploy, deployments_app, predict
from raydc.sim_cli import sim

app = typer.Typer(help="raydc: elastic training, tuning and serving on Ray.", no_args_is_help=True)
jobs_app = typer.Typer(help="List, inspect and cancel jobs.", no_args_is_help=True)
models_app = typer.Typer(help="The model registry.", no_args_is_help=True)
# An admin's choice of tenant for a name several tenants use (the server says which).
ModelTenant = Annotated[str | None, typer.Option("--tenant", help="the tenant whose model (admin)")]
app.add_typer(jobs_app, name="jobs")
app.add_typer(models_app, name="models")
app.add_typer(tenants_app, name="tenants")
app.add_typer(tokens_app, name="tokens")
app.command("sim")(sim)
app.add_typer(deployments_app, name="deployments")
app.add_typer(cluster_app, name="cluster")
app.command("deploy")(deploy)
app.command("predict")(predict)


@app.command()
def server(
    host: Annotated[str | None, typer.Option(help="bind address")] = None,
    port: Annotated[int | None, typer.Option(help="port")] = None,
) -> None:
    """Run the control plane (starts a local Ray head unless RAYDC_RAY_ADDRESS is set)."""
    # The server is its own program: the CLI stays an HTTP client and never loads it.
    command = [sys.executable, "-m", "raydc.server"]
    if host is not None:
        command += ["--host", host]
    if port is not None:
        command += ["--port", str(port)]
    os.execv(sys.executable, command)


@app.command()
def submit(
    spec_file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="job YAML")],
    working_dir: Annotated[
        Path | None,
        typer.Option(
            "--working-dir",
            "-w",
            file_okay=False,
            exists=True,
            help="upload this dir as the job's code",
        ),
    ] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="stream status and logs")] = False,
) -> None:
    """Submit a job spec (YAML or JSON)."""
    spec = yaml.safe_load(spec_file.read_text())
    if not isinstance(spec, dict):
        err.print(f"[red]error[/red] {spec_file} does not hold a mapping")
        raise typer.Exit(2)
    with cli_base.client() as client:
        try:
            if working_dir is not None:
                spec["code"] = {"ref": client.upload_code(working_dir)}
                err.print(f"uploaded {working_dir} as {spec['code']['ref'][:19]}…")
            job = client.submit_job(spec)
        except ApiError as error:
            fail(error)
        console.print(f"submitted [bold]{job['id']}[/bold] ({status_text(job['status'])})")
        if follow:
            _follow(client, job["id"])


def _follow(client: Client, job_id: str) -> None:
    """Show the job's status until it runs, then its logs, then a summary."""
    started = time.monotonic()
    with console.status(f"{job_id}: PENDING") as spinner:
        while True:
            job = client.get_job(job_id)
            if job["status"] in TERMINAL or job["status"] == "RUNNING":
                break
            spinner.update(f"{job_id}: {job['status']}  ({time.monotonic() - started:.0f}s)")
            time.sleep(1)
    if job["status"] == "RUNNING" or job["attempt"] > 0:
        for chunk in client.follow_logs(job_id):
            sys.stdout.write(chunk)
            sys.stdout.flush()
    job = client.wait(job_id)
    console.rule(f"{job_id} {status_text(job['status'])}")
    if job.get("result"):
        print_json(job["result"])
    if job.get("error"):
        err.print(f"[red]{job['error']}[/red]")
    if job["status"] != "SUCCEEDED":
        raise typer.Exit(1)


@jobs_app.command("list")
def jobs_list(
    status: Annotated[str | None, typer.Option(help="filter by status")] = None,
    kind: Annotated[str | None, typer.Option(help="filter by kind")] = None,
    limit: int = 50,
    offset: int = 0,
) -> None:
    """List jobs, newest first."""
    with cli_base.client() as client:
        try:
            page = client.list_jobs(status=status, kind=kind, limit=limit, offset=offset)
        except ApiError as error:
            fail(error)
    table = Table("ID", "NAME", "KIND", "TENANT", "PRIORITY", "STATUS", "CREATED")
    for job in page["items"]:
        table.add_row(
            job["id"],
            job["name"],
            job["kind"],
            job["tenant"],
            job["priority"],
            status_text(job["status"]),
            job["created_at"][:19].replace("T", " "),
        )
    console.print(table)
    console.print(f"{len(page['items'])} of {page['total']}")


@jobs_app.command("get")
def jobs_get(job_id: str) -> None:
    """Show one job."""
    with cli_base.client() as client:
        try:
            print_json(client.get_job(job_id))
        except ApiError as error:
            fail(error)


@jobs_app.command("trials")
def jobs_trials(job_id: str) -> None:
    """A tune job's trials: status, iterations, the config values searched, latest metrics.

    The best trial (once the search has ended) is marked with *.
    """
    with cli_base.client() as client:
        try:
            job = client.get_job(job_id)
        except ApiError as error:
            fail(error)
    if job["kind"] != "tune":
        err.print(f"[red]error[/red] {job_id} is a {job['kind']} job, not a tune job")
        raise typer.Exit(1)
    result = job.get("result") or {}
    trials: list[dict[str, Any]] = result.get("trials") or []
    if not trials:
        console.print(f"{job_id} ({status_text(job['status'])}): no trials yet")
        return
    configs = [t.get("config") or {} for t in trials]
    # The searched keys: those whose value differs between trials (all, for a single one).
    keys = [k for k in configs[0] if len(trials) == 1 or len({repr(c.get(k)) for c in configs}) > 1]
    best = (result.get("best_trial") or {}).get("id")
    table = Table("TRIAL", "STATUS", "ITER", *(k.upper() for k in keys), "METRICS")
    for trial, config in zip(trials, configs, strict=True):
        marked = f"* {trial['id']}" if trial["id"] == best else trial["id"]
        metrics = _metrics_text(trial.get("metrics") or {})
        if trial.get("error"):
            metrics = f"[red]{trial['error']}[/red]"
        values = [_value_text(config.get(k)) for k in keys]
        table.add_row(marked, status_text(trial["status"]), str(trial.get("iterations", 0)),
                      *values, metrics)  # fmt: skip
    console.print(table)
    console.print(f"{job_id} ({status_text(job['status'])}): {len(trials)} trials")


def _value_text(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _metrics_text(metrics: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_value_text(v)}" for k, v in metrics.items())


@jobs_app.command("logs")
def jobs_logs(job_id: str, follow: Annotated[bool, typer.Option("--follow", "-f")] = False) -> None:
    """Print a job's logs (-f streams them until the job ends)."""
    with cli_base.client() as client:
        try:
            if follow:
                for chunk in client.follow_logs(job_id):
                    sys.stdout.write(chunk)
                    sys.stdout.flush()
            else:
                sys.stdout.write(client.job_logs(job_id))
        except ApiError as error:
            fail(error)


@jobs_app.command("cancel")
def jobs_cancel(job_id: str) -> None:
    """Cancel a job in any non-terminal state."""
    with cli_base.client() as client:
        try:
            job = client.cancel_job(job_id)
        except ApiError as error:
            fail(error)
    console.print(f"cancel requested for {job_id} ({status_text(job['status'])})")


@jobs_app.command("events")
def jobs_events(job_id: str) -> None:
    """A job's status history."""
    with cli_base.client() as client:
        try:
            events = client.job_events(job_id)
        except ApiError as error:
            fail(error)
    table = Table("TIME", "FROM", "TO", "REASON", "MESSAGE")
    for event in events:
        table.add_row(
            event["created_at"][:23].replace("T", " "),
            event["from_status"] or "",
            status_text(event["to_status"]),
            event["reason"] or "",
            event["message"] or "",
        )
    console.print(table)


@app.command()
def queue() -> None:
    """Pending jobs in scheduling order, with why each waits."""
    with cli_base.client() as client:
        try:
            entries = client.queue()
        except ApiError as error:
            fail(error)
    table = Table("#", "ID", "TENANT", "PRIORITY", "WAITING BECAUSE")
    for position, entry in enumerate(entries, 1):
        table.add_row(
            str(position),
            entry["id"],
            entry["tenant"],
            entry["priority"],
            entry["reason"] or "next pass",
        )
    console.print(table)


@models_app.command("list")
def models_list(tenant: ModelTenant = None) -> None:
    """Registered models."""
    with cli_base.client() as client:
        try:
            models = client.list_models(tenant)
        except ApiError as error:
            fail(error)
    table = Table("NAME", "TENANT", "VERSIONS", "LATEST")
    for model in models:
        table.add_row(
            model["name"], model["tenant"], str(model["versions"]), str(model["latest_version"])
        )
    console.print(table)


@models_app.command("versions")
def models_versions(name: str, tenant: ModelTenant = None) -> None:
    """A model's versions with their metrics and the job that made each."""
    with cli_base.client() as client:
        try:
            versions = client.model_versions(name, tenant)
        except ApiError as error:
            fail(error)
    table = Table("VERSION", "JOB", "METRICS", "URI")
    for version in versions:
        metrics = _metrics_text(version["metrics"])
        trial = (version.get("lineage") or {}).get("trial")
        made_by = f"{version['job_id']} (trial {trial})" if trial else version["job_id"]
        table.add_row(str(version["version"]), made_by, metrics, version["uri"])
    console.print(table)


REPORT_ROWS = (
    ("params", "params", "params"),
    ("size_bytes", "size (bytes)", "size"),
    ("sparsity", "sparsity", None),
    ("latency_ms_b1_p50", "latency b1 p50 (ms)", "latency_b1"),
    ("latency_ms_b1_p95", "latency b1 p95 (ms)", None),
    ("latency_ms_b32_p50", "latency b32 p50 (ms)", "latency_b32"),
    ("latency_ms_b32_p95", "latency b32 p95 (ms)", None),
    ("throughput_b32_per_s", "throughput b32 (/s)", None),
)


@models_app.command("show")
def models_show(
    ref: Annotated[str, typer.Argument(help="NAME:VERSION")], tenant: ModelTenant = None
) -> None:
    """One version: what made it and, for a compressed one, its report as a table."""
    name, _, number = ref.partition(":")
    if not number.isdigit():
        fail(ApiError(422, f"give NAME:VERSION, e.g. intent:3 (got {ref!r})"))
    with cli_base.client() as client:
        try:
            version = client.model_version(name, int(number), tenant)
        except ApiError as error:
            fail(error)
    lineage = version.get("lineage") or {}
    console.print(f"{name}:{version['version']}  {status_text(version['status'].upper())}  "
                  f"made by {lineage.get('kind', 'job')} {version['job_id']}")  # fmt: skip
    if lineage.get("parent"):
        steps = " -> ".join(step.get("type", "?") for step in lineage.get("steps") or [])
        console.print(f"from {lineage['parent']} by {steps}")
    if version.get("status_reason"):
        console.print(f"rejected: {version['status_reason']}")
    report = version.get("report")
    if not report:
        console.print(f"metrics: {_metrics_text(version['metrics'])}")
        return
    console.print(report_table(report))


def _cell(value: Any) -> str:
    return "" if value is None else _value_text(value)


def report_table(report: dict[str, Any]) -> Table:
    """Parent, child and parent/child ratio (above 1: the child is smaller or faster)."""
    parent, child, ratios = report["parent"], report["child"], report.get("ratios") or {}
    table = Table("", "PARENT", "CHILD", "RATIO")
    for key, label, ratio in REPORT_ROWS:
        value = ratios.get(ratio) if ratio else None
        table.add_row(label, _cell(parent.get(key)), _cell(child.get(key)),
                      f"{value:g}x" if isinstance(value, int | float) else "")  # fmt: skip
    drop = report.get("metric_drop_points")
    change = f"{0.0 - drop:+g} points" if isinstance(drop, int | float) else ""
    table.add_row(report.get("metric_name", "metric"), _value_text(parent.get("metric")),
                  _value_text(child.get("metric")), change)  # fmt: skip
    return table


if __name__ == "__main__":
    app()
