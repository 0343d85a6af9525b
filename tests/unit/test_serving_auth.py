"""The Serve ingress's token check: asks the control plane once, caches by token hash."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from raydc.workloads.serving import AuthUnavailable, Principal, TokenChecker

KNOWN = {"rdc_a": {"tenant": "team-a", "role": "member", "name": "alice"}}


class ControlPlane:
    """whoami as the control plane answers it, counting the calls."""

    def __init__(self, status: int | None = None, delay_s: float = 0.0) -> None:
        self.calls = 0
        self.status = status
        self.delay_s = delay_s

    async def handler(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        await asyncio.sleep(self.delay_s)
        assert request.url.path == "/v1/auth/whoami"
        if self.status is not None:
            return httpx.Response(self.status)
        token = request.headers["authorization"].removeprefix("Bearer ")
        if token not in KNOWN:
            return httpx.Response(401, json={"detail": "unknown token"})
        return httpx.Response(200, json=KNOWN[token])

    def checker(self, **kwargs: float) -> TokenChecker:
        transport = httpx.MockTransport(self.handler)
        return TokenChecker("http://cp:8080/", transport=transport, **kwargs)


def test_known_token_is_asked_once_then_cached() -> None:
    plane = ControlPlane()
    checker = plane.checker()

    async def twice() -> list[Principal | None]:
        return [await checker.principal("rdc_a"), await checker.principal("rdc_a")]

    first, second = asyncio.run(twice())
    assert first == second == Principal(tenant="team-a", role="member", name="alice")
    assert plane.calls == 1


def test_unknown_token_is_refused_and_asked_again_after_the_short_ttl() -> None:
    plane = ControlPlane()
    checker = plane.checker(denied_ttl_s=0.05)

    async def scenario() -> list[Principal | None]:
        answers = [await checker.principal("rdc_x"), await checker.principal("rdc_x")]
        await asyncio.sleep(0.1)
        return [*answers, await checker.principal("rdc_x")]

    assert asyncio.run(scenario()) == [None, None, None]
    assert plane.calls == 2


def test_concurrent_first_requests_share_one_lookup() -> None:
    plane = ControlPlane(delay_s=0.05)
    checker = plane.checker()

    async def burst() -> list[Principal | None]:
        return await asyncio.gather(*(checker.principal("rdc_a") for _ in range(20)))

    assert {p.tenant for p in asyncio.run(burst()) if p is not None} == {"team-a"}
    assert plane.calls == 1


def test_cache_is_bounded() -> None:
    plane = ControlPlane()
    checker = plane.checker(max_entries=3)

    async def many() -> None:
        for n in range(10):
            await checker.principal(f"rdc_unknown{n}")
        await checker.principal("rdc_unknown0")  # evicted long ago: asked again

    asyncio.run(many())
    assert plane.calls == 11


def test_control_plane_errors_are_not_cached_as_refusals() -> None:
    plane = ControlPlane(status=500)
    checker = plane.checker()

    async def ask() -> None:
        await checker.principal("rdc_a")

    for _ in range(2):
        with pytest.raises(AuthUnavailable, match="500"):
            asyncio.run(ask())
    assert plane.calls == 2
