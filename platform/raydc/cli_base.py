"""What every ``raydc`` command shares: the SDK client it talks through, and how it
prints results and errors."""

from __future__ import annotations

import json
from typing import Any, NoReturn

import typer
from rich.console import Console

from raydc.client import ApiError, Client

console = Console()
err = Console(stderr=True)
STATUS_STYLE = {"SUCCEEDED": "green", "FAILED": "red", "CANCELLED": "yellow", "RUNNING": "cyan",
                "READY": "green", "REJECTED": "red"}  # fmt: skip


def client() -> Client:
    """The SDK client a command uses (``RAYDC_URL``, ``RAYDC_TOKEN``); tests replace it."""
    return Client()


def fail(error: ApiError) -> NoReturn:
    err.print(f"[red]error[/red] {error}")
    raise typer.Exit(1)


def status_text(status: str) -> str:
    style = STATUS_STYLE.get(status)
    return f"[{style}]{status}[/{style}]" if style else status


def print_json(data: Any) -> None:
    console.print_json(json.dumps(data, default=str))
