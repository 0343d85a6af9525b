"""``raydc deploy`` and ``raydc deployments``: model deployments on Ray Serve, over REST."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from raydc.client import ApiError, Client

deployments_app = typer.Typer(help="Model deployments (Ray Serve).", no_args_is_help=True)
# An admin's choice of tenant for a name several tenants use (the server says which).
Tenant = Annotated[str | None, typer.Option("--tenant", help="the tenant whose deployment (admin)")]
console = Console()
err = Console(stderr=True)


def _fail(error: ApiError | TimeoutError) -> None:
    err.print(f"[red]error[/red] {error}")
    raise typer.Exit(1)


def _show(deployment: dict[str, Any]) -> None:
    canary = deployment.get("canary")
    extra = f"  canary {canary['model']} at {canary['percent']:g}%" if canary else ""
    console.print(
        f"[bold]{deployment['name']}[/bold] {deployment['status']}  {deployment['model']}  "
        f"replicas {deployment['replicas']}{extra}\n  {deployment['url']}"
    )
    if deployment.get("message"):
        console.print(f"  {deployment['message']}")


def deploy(
    spec_file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="deployment YAML")],
    wait: Annotated[bool, typer.Option("--wait", help="wait until it is HEALTHY")] = False,
) -> None:
    """Create a deployment, or change an existing one to match the file (like kubectl apply)."""
    spec = yaml.safe_load(spec_file.read_text())
    if not isinstance(spec, dict):
        err.print(f"[red]error[/red] {spec_file} does not hold a mapping")
        raise typer.Exit(2)
    with Client() as client:
        try:
            deployment = client.apply_deployment(spec)
            if wait:
                deployment = client.wait_deployment(deployment["name"], tenant=deployment["tenant"])
        except (ApiError, TimeoutError) as error:
            _fail(error)
    _show(deployment)


@deployments_app.command("list")
def deployments_list(tenant: Tenant = None) -> None:
    """Deployments with their status, version and replicas."""
    with Client() as client:
        try:
            deployments = client.list_deployments(tenant)
        except ApiError as error:
            _fail(error)
    table = Table("NAME", "TENANT", "STATUS", "MODEL", "CANARY", "REPLICAS", "URL")
    for d in deployments:
        canary = d.get("canary")
        table.add_row(
            d["name"], d["tenant"], d["status"], d["model"],
            f"{canary['model']} {canary['percent']:g}%" if canary else "-",
            str(d["replicas"]), d["url"],
        )  # fmt: skip
    console.print(table)


@deployments_app.command("get")
def deployments_get(name: str, tenant: Tenant = None) -> None:
    """One deployment, in full (JSON)."""
    with Client() as client:
        try:
            console.print_json(json.dumps(client.get_deployment(name, tenant), default=str))
        except ApiError as error:
            _fail(error)


@deployments_app.command("set")
def deployments_set(
    name: str,
    model: Annotated[str | None, typer.Option(help="new version: name:version or name")] = None,
    min_replicas: Annotated[int | None, typer.Option(min=0)] = None,
    max_replicas: Annotated[int | None, typer.Option(min=1)] = None,
    canary_model: Annotated[str | None, typer.Option(help="canary version")] = None,
    canary_percent: Annotated[float | None, typer.Option(min=0, max=100)] = None,
    no_canary: Annotated[bool, typer.Option("--no-canary", help="remove the canary")] = False,
    tenant: Tenant = None,
) -> None:
    """Change a deployment's version, replica range or canary without downtime."""
    with Client() as client:
        try:
            current = client.get_deployment(name, tenant)
            tenant = current["tenant"]  # the PATCH changes the one just read
            changes: dict[str, Any] = {}
            if model is not None:
                changes["model"] = model
            if min_replicas is not None or max_replicas is not None:
                scaling = dict(current["spec"]["autoscaling"])
                if min_replicas is not None:
                    scaling["min_replicas"] = min_replicas
                if max_replicas is not None:
                    scaling["max_replicas"] = max_replicas
                changes["autoscaling"] = scaling
            if no_canary:
                changes["canary"] = None
            elif canary_model is not None or canary_percent is not None:
                canary = dict(current.get("canary") or {})
                if canary_model is not None:
                    canary["model"] = canary_model
                if canary_percent is not None:
                    canary["percent"] = canary_percent
                changes["canary"] = canary
            _show(client.patch_deployment(name, changes, tenant))
        except ApiError as error:
            _fail(error)


@deployments_app.command("delete")
def deployments_delete(name: str, tenant: Tenant = None) -> None:
    """Remove a deployment (only that one) from Serve."""
    with Client() as client:
        try:
            _show(client.delete_deployment(name, tenant))
        except ApiError as error:
            _fail(error)


def predict(
    name: str,
    inputs: Annotated[list[str], typer.Argument(help="inputs; each parsed as JSON if it can be")],
    tenant: Tenant = None,
) -> None:
    """Send inputs to a deployment with your token and print the answer."""
    values: list[Any] = []
    for item in inputs:
        try:
            values.append(json.loads(item))
        except ValueError:
            values.append(item)
    with Client() as client:
        try:
            console.print_json(json.dumps(client.predict(name, values, tenant=tenant)))
        except ApiError as error:
            _fail(error)
