"""``raydc tenants`` and ``raydc tokens``: tenants, quotas and API tokens."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from raydc import cli_base
from raydc.cli_base import console, err, fail, print_json
from raydc.client import ApiError

tenants_app = typer.Typer(help="Tenants and quotas (admin).", no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens: create (admin), list, revoke.", no_args_is_help=True)


@tenants_app.command("create")
def tenants_create(
    name: str,
    cpu: Annotated[float | None, typer.Option(help="CPU quota")] = None,
    gpu: Annotated[float | None, typer.Option(help="GPU quota")] = None,
    memory_gb: Annotated[float | None, typer.Option(help="memory quota (GB)")] = None,
    storage_gb: Annotated[
        float | None, typer.Option(help="storage quota (GB): code bundles and artifacts")
    ] = None,
) -> None:
    """Create a tenant, optionally with a quota."""
    limits = {"cpu": cpu, "gpu": gpu, "memory_gb": memory_gb, "storage_gb": storage_gb}
    quota = {k: v for k, v in limits.items() if v is not None}
    with cli_base.client() as client:
        try:
            print_json(client.create_tenant(name, quota))
        except ApiError as error:
            fail(error)


@tenants_app.command("list")
def tenants_list() -> None:
    """Tenants, their quotas, fair-share weights and borrowing limits (∞ = no limit)."""
    with cli_base.client() as client:
        try:
            tenants = client.list_tenants()
        except ApiError as error:
            fail(error)
    # Storage is shown once some tenant has a storage quota (the API omits it until set).
    storage = any(tenant["quota"].get("storage_gb") is not None for tenant in tenants)
    table = Table(
        "TENANT", "CPU", "GPU", "MEMORY GB", "WEIGHT", "BORROW CPU", "BORROW GPU",
        "BORROW MEMORY GB", *(["STORAGE GB"] if storage else []),
    )  # fmt: skip
    for tenant in tenants:
        stored = tenant["quota"].get("storage_gb")
        table.add_row(
            tenant["name"],
            *_limits(tenant["quota"]),
            f"{tenant['weight']:g}",
            *_limits(tenant["borrowing_limit"]),
            *([f"{stored:g}" if stored is not None else "∞"] if storage else []),
        )
    console.print(table)


def _limits(limits: dict[str, float | None]) -> list[str]:
    return [f"{limits[k]:g}" if limits[k] is not None else "∞" for k in ("cpu", "gpu", "memory_gb")]


@tenants_app.command("quota")
def tenants_quota(
    name: str,
    cpu: Annotated[float | None, typer.Option(help="CPU quota (omit = unlimited)")] = None,
    gpu: Annotated[float | None, typer.Option(help="GPU quota (omit = unlimited)")] = None,
    memory_gb: Annotated[float | None, typer.Option(help="memory quota in GB")] = None,
    storage_gb: Annotated[
        float | None, typer.Option(help="storage quota in GB: code bundles and artifacts")
    ] = None,
) -> None:
    """Set a tenant's quota; a dimension left out becomes unlimited."""
    quota = {"cpu": cpu, "gpu": gpu, "memory_gb": memory_gb, "storage_gb": storage_gb}
    with cli_base.client() as client:
        try:
            print_json(client.set_quota(name, quota))
        except ApiError as error:
            fail(error)


@tenants_app.command("scheduling")
def tenants_scheduling(
    name: str,
    weight: Annotated[
        float, typer.Option(help="fair-share weight among tenants at the same priority")
    ] = 1.0,
    borrow_cpu: Annotated[
        float | None, typer.Option(help="CPUs it may borrow beyond its quota (omit = no limit)")
    ] = None,
    borrow_gpu: Annotated[
        float | None, typer.Option(help="GPUs it may borrow beyond its quota (omit = no limit)")
    ] = None,
    borrow_memory_gb: Annotated[
        float | None, typer.Option(help="memory (GB) it may borrow beyond its quota")
    ] = None,
) -> None:
    """Set a tenant's fair-share weight and borrowing limit (0 = may not borrow).

    Borrowing uses other tenants' idle quota; their owners take it back by preemption.
    """
    limit = {"cpu": borrow_cpu, "gpu": borrow_gpu, "memory_gb": borrow_memory_gb}
    with cli_base.client() as client:
        try:
            print_json(client.set_tenant_scheduling(name, weight=weight, borrowing_limit=limit))
        except ApiError as error:
            fail(error)


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """Seconds in `90`, `90s`, `15m`, `12h` or `30d`; ValueError for anything else."""
    number, unit = (text[:-1], text[-1]) if text[-1:] in _DURATION_UNITS else (text, "s")
    if not number.isdigit() or int(number) <= 0:
        raise ValueError(f"'{text}' is no lifetime: a whole number, then s, m, h or d")
    return int(number) * _DURATION_UNITS[unit]


def _lifetime(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None


@tokens_app.command("create")
def tokens_create(
    tenant: Annotated[str, typer.Option(help="tenant the token acts in")],
    role: Annotated[str, typer.Option(help="admin | member | viewer | monitor")] = "member",
    name: Annotated[str, typer.Option(help="what the token is for")] = "cli",
    expires_in: Annotated[
        str | None,
        typer.Option(help="lifetime: seconds, or 15m, 12h, 30d (omit = never expires)"),
    ] = None,
) -> None:
    """Create an API token; it is shown once, alone on stdout (`> file` keeps just it)."""
    lifetime = _lifetime(expires_in)
    with cli_base.client() as client:
        try:
            created = client.create_token(tenant, role, name, expires_in_s=lifetime)
        except ApiError as error:
            fail(error)
    until = f", expires {_when(created['expires_at'])}" if created.get("expires_at") else ""
    err.print(
        f"token {created['id']} for {created['tenant']} ({created['role']}{until}), shown once:"
    )
    print(created["token"])


def _when(value: str | None) -> str:
    return value[:19].replace("T", " ") if value else "-"


@tokens_app.command("list")
def tokens_list(
    tenant: Annotated[str | None, typer.Option(help="one tenant's (admins)")] = None,
    all_: Annotated[bool, typer.Option("--all", help="also revoked and expired tokens")] = False,
) -> None:
    """Tokens you may see (never their secrets): an admin's every tenant, others their own."""
    with cli_base.client() as client:
        try:
            listed = client.list_tokens(tenant=tenant, include_inactive=all_)
        except ApiError as error:
            fail(error)
    table = Table("ID", "TENANT", "ROLE", "NAME", "CREATED", "EXPIRES", "LAST USED", "REVOKED")
    for token in listed:
        table.add_row(
            token["id"], token["tenant"], token["role"], token["name"],
            _when(token["created_at"]), _when(token["expires_at"]),
            _when(token["last_used_at"]), _when(token["revoked_at"]),
        )  # fmt: skip
    console.print(table)


@tokens_app.command("revoke")
def tokens_revoke(
    token_id: Annotated[str, typer.Argument(help="the token's ID (tokens list)")],
) -> None:
    """Revoke a token: refused by every control plane replica within 10 s."""
    with cli_base.client() as client:
        try:
            revoked = client.revoke_token(token_id)
        except ApiError as error:
            fail(error)
    console.print(
        f"revoked {revoked['id']} ({revoked['tenant']}, {revoked['role']}, {revoked['name']})"
    )
