"""``raydc cluster``: the cluster's nodes (over HTTP), or bring a cluster up or down.

``up|down|status CONFIG`` run ``python -m raydc.cluster.launcher`` as their own program:
the CLI stays an HTTP client and never loads Ray (see raydc/cluster/launcher.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from raydc.client import ApiError, Client

console = Console()
err = Console(stderr=True)
cluster_app = typer.Typer(
    help="Cluster nodes and capacity; `up|down|status CONFIG` for `ray up` clusters.",
    invoke_without_command=True,
)
ConfigArg = Annotated[
    Path, typer.Argument(exists=True, dir_okay=False, help="a `ray up` cluster config")
]


@cluster_app.callback()
def nodes(context: typer.Context) -> None:
    """Without a subcommand: the control plane's view of the nodes, capacity and usage."""
    if context.invoked_subcommand is not None:
        return
    with Client() as client:
        try:
            info = client.cluster()
        except ApiError as error:
            err.print(f"[red]error[/red] {error}")
            raise typer.Exit(1) from None
    table = Table("NODE", "IP", "HEAD", "ALIVE", "CPU", "GPU", "MEMORY GB")
    for node in info["nodes"]:
        table.add_row(
            _short_id(node["node_id"]),
            node["ip"],
            str(node["is_head"]),
            str(node["alive"]),
            f"{node['cpu']:g}",
            f"{node['gpu']:g}",
            f"{node['memory_gb']:.1f}",
        )
    console.print(table)
    console.print(
        f"capacity {info['capacity']}  in use {info['in_use']}  pending {info['pending_demand']}"
    )


def _short_id(node_id: str) -> str:
    # Ray's ids are random hex; a fake cluster's differ only at the end.
    return node_id if len(node_id) <= 12 else f"{node_id[:6]}…{node_id[-5:]}"


def _launcher(action: str, config: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "raydc.cluster.launcher", action, str(config)])
    raise typer.Exit(done.returncode)


@cluster_app.command()
def up(config: ConfigArg) -> None:
    """Start the cluster (`ray up`, or a fake multi-node cluster here) and its control plane."""
    _launcher("up", config)


@cluster_app.command()
def down(config: ConfigArg) -> None:
    """Stop the control plane and the cluster (`ray down`)."""
    _launcher("down", config)


@cluster_app.command()
def status(config: ConfigArg) -> None:
    """The cluster's head, nodes and control plane."""
    _launcher("status", config)
