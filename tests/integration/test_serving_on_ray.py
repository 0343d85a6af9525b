"""Model deployments on a real Ray Serve: token checks, batching, in-place version change,
canary share, autoscaling and scale to zero.

Every test deploys the echo predictor (serve_fixture_app/echo_app) with raydc's own Serve
application and deletes it at the end: Serve replicas hold CPUs other tests count on.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from raydc.cluster.client import RayCluster
from raydc.cluster.serve import AppStatus, ModelDeploymentOptions, RayServe, application_config
from raydc.server.app import create_app
from raydc.server.services.launch import RAYDC_PACKAGE_DIR
from raydc.settings import Settings
from tests.databases import databases
from tests.integration.conftest import ADMIN_TOKEN, ServerThread

pytestmark = pytest.mark.workload

ECHO_APP = Path(__file__).parent / "serve_fixture_app" / "echo_app"
APP = "echo-test"
ROUTE = "/team-a/echo"


class AuthOnlyControlPlane(ServerThread):
    """A real control plane over HTTP, without its reconcilers: the ingresses only ask it
    who a token is, and a deployment reconciler must not undeclare these test apps."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.app = create_app(settings, run_reconciler=False)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)


@dataclass(frozen=True)
class Tokens:
    team_a: str
    team_b: str
    admin: str = ADMIN_TOKEN


@pytest.fixture(scope="module")
def control_plane(
    ray_head: RayCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Tokens]]:
    tmp = tmp_path_factory.mktemp("serve-cp")
    postgres = databases()
    database = postgres.create() if postgres else f"sqlite:///{tmp / 'raydc.db'}"
    settings = Settings(
        home=tmp / "home",
        database_url=database,
        ray_address=ray_head.dashboard_url,
        ray_auth_token=ray_head.auth_token,
        admin_token=ADMIN_TOKEN,
    )
    server = AuthOnlyControlPlane(settings).start()
    admin = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30
    )
    tokens = []
    for tenant in ("team-a", "team-b"):
        created = admin.post("/v1/tenants", json={"name": tenant, "quota": {"cpu": 4}})
        assert created.status_code == 201, created.text
        body = {"tenant": tenant, "role": "member", "name": f"{tenant}-member"}
        tokens.append(admin.post("/v1/tokens", json=body).json()["token"])
    admin.close()
    try:
        yield server.url, Tokens(team_a=tokens[0], team_b=tokens[1])
    finally:
        server.stop()
        if postgres is not None:
            postgres.drop(database)


@dataclass
class Echo:
    """The echo app on Serve: write checkpoints, declare the app, call it."""

    serve: RayServe
    port: int
    auth_url: str
    modules: list[str]
    tmp: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{ROUTE}/predict"

    def checkpoint(self, version: str, load_s: float = 0.0, predict_s: float = 0.0) -> Path:
        directory = self.tmp / version.replace(":", "-")
        directory.mkdir(exist_ok=True)
        (directory / "version.txt").write_text(version)
        (directory / "load_s").write_text(str(load_s))
        (directory / "predict_s").write_text(str(predict_s))
        return directory

    def options(self, checkpoint: Path, **changes: Any) -> ModelDeploymentOptions:
        batching = {
            "max_batch_size": changes.pop("max_batch_size", 16),
            "batch_wait_timeout_s": changes.pop("batch_wait_timeout_s", 0.05),
        }
        values: dict[str, Any] = {
            "user_config": {
                "model_version": (checkpoint / "version.txt").read_text(),
                "checkpoint_dir": str(checkpoint),
                **batching,
            },
            "min_replicas": 1,
            "max_replicas": 1,
            "target_ongoing_requests": 2.0,
            "upscale_delay_s": 1.0,
            "downscale_delay_s": 5.0,
            "ray_actor_options": {"num_cpus": 0.5},
        }
        values.update(changes)
        return ModelDeploymentOptions(**values)

    def apply(self, stable: ModelDeploymentOptions, **app: Any) -> None:
        """Serve runs this one app (``app``: :meth:`app`'s other arguments)."""
        self.serve.apply([self.app(stable, **app)], "127.0.0.1", self.port)

    def app(
        self,
        stable: ModelDeploymentOptions,
        canary: ModelDeploymentOptions | None = None,
        canary_percent: float = 0,
        predictor: str = "echo_app.serve:Predictor",
        tenant: str = "team-a",
        name: str = APP,
        route: str = ROUTE,
    ) -> dict[str, Any]:
        args = {
            "tenant": tenant,
            "name": "echo",
            "auth_url": self.auth_url,
            "predictor": predictor,
            "canary": canary is not None,
        }
        return application_config(
            app_name=name,
            route_prefix=route,
            args=args,
            runtime_env={"py_modules": self.modules},
            stable=stable,
            canary=canary,
            canary_percent=canary_percent,
        )

    def wait(self, done: Callable[[AppStatus], bool], timeout_s: float = 90) -> AppStatus:
        deadline = time.monotonic() + timeout_s
        while True:
            app = self.serve.status().get(APP)
            if app is not None and done(app):
                return app
            assert app is None or app.status != "DEPLOY_FAILED", app.message
            assert time.monotonic() < deadline, f"timed out; last status {app}"
            time.sleep(0.5)

    def wait_running(self, timeout_s: float = 90) -> AppStatus:
        def ready(app: AppStatus) -> bool:
            return app.status == "RUNNING" and all(
                d.status == "HEALTHY" for d in app.deployments.values()
            )

        return self.wait(ready, timeout_s)

    def predict(self, token: str | None, body: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.post(self.url, json=body, headers=headers, timeout=60)


@pytest.fixture
def echo(
    ray_head: RayCluster,
    serve_port: int,
    control_plane: tuple[str, Tokens],
    tmp_path: Path,
) -> Iterator[Echo]:
    serve = RayServe(ray_head.dashboard_url, ray_head.auth_token)
    modules = serve.upload_modules([RAYDC_PACKAGE_DIR, ECHO_APP])
    yield Echo(serve, serve_port, control_plane[0], modules, tmp_path)
    serve.apply([], "127.0.0.1", serve_port)
    deadline = time.monotonic() + 60
    while serve.status():  # gone only once its replicas, and their CPUs, are released
        assert time.monotonic() < deadline, f"Serve apps not deleted: {serve.status()}"
        time.sleep(0.5)


def batches(checkpoint: Path) -> list[tuple[int, int]]:
    """(batch size, replica pid) of every batch the echo predictor ran from a checkpoint."""
    log = checkpoint / "batches.log"
    if not log.exists():
        return []
    return [
        (int(size), int(pid))
        for size, pid in (line.split() for line in log.read_text().split("\n") if line)
    ]


@dataclass
class Load:
    """Clients sending one-input requests back to back, in a thread, until stopped."""

    url: str
    token: str
    clients: int
    results: list[tuple[float, int, str]] = field(default_factory=list)  # (end, status, text)
    latencies: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Load:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=120)

    async def _run(self) -> None:
        limits = httpx.Limits(max_connections=self.clients)
        headers = {"Authorization": f"Bearer {self.token}"}
        async with httpx.AsyncClient(limits=limits, headers=headers, timeout=60) as client:

            async def one_client(number: int) -> None:
                sent = 0
                while not self._stop.is_set():
                    started = time.monotonic()
                    try:
                        response = await client.post(
                            self.url, json={"inputs": [f"c{number}-{sent}"]}
                        )
                        outcome = (response.status_code, response.text)
                    except httpx.HTTPError as error:
                        outcome = (0, f"{type(error).__name__}: {error}")
                    ended = time.monotonic()
                    self.results.append((ended, *outcome))
                    self.latencies.append(ended - started)
                    sent += 1

            await asyncio.gather(*(one_client(n) for n in range(self.clients)))

    def failures(self) -> list[tuple[float, int, str]]:
        return [r for r in self.results if r[1] != 200]


def test_predictions_need_a_token_of_the_deployments_tenant(
    echo: Echo, control_plane: tuple[str, Tokens]
) -> None:
    tokens = control_plane[1]
    checkpoint = echo.checkpoint("echo:1")
    echo.apply(echo.options(checkpoint))
    app = echo.wait_running()
    assert app.deployments["Stable"].running_replicas == 1
    assert app.deployments["Stable"].target_replicas == 1
    assert sorted(app.deployments) == ["Stable"]  # the ingress and the model in one
    assert "Canary" not in app.deployments

    answer = echo.predict(tokens.team_a, {"inputs": ["x", "y"]})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"predictions": ["echo:1:x", "echo:1:y"], "model_version": "echo:1"}
    assert echo.predict(tokens.admin, {"inputs": ["z"]}).status_code == 200

    assert echo.predict(None, {"inputs": ["x"]}).status_code == 401
    malformed = httpx.post(echo.url, json={"inputs": ["x"]}, headers={"Authorization": "Basic x"})
    assert malformed.status_code == 401
    assert echo.predict("rdc_not-a-token", {"inputs": ["x"]}).status_code == 401
    other_tenant = echo.predict(tokens.team_b, {"inputs": ["x"]})
    assert other_tenant.status_code == 403
    assert "team-a" in other_tenant.json()["detail"]

    for body, field_name in (
        ({}, "inputs"),
        ({"inputs": "x"}, "inputs"),
        ({"inputs": []}, "inputs"),
        ({"inputs": ["x"] * 1025}, "inputs"),
        (["x"], "body"),
    ):
        refused = echo.predict(tokens.team_a, body)
        assert refused.status_code == 422, (body, refused.text)
        assert refused.json()["detail"].startswith(field_name), refused.text

    bad = echo.predict(tokens.team_a, {"inputs": ["ok", "bad"]})
    assert bad.status_code == 422
    assert bad.json()["detail"] == "echo cannot predict 'bad'"
    crashed = echo.predict(tokens.team_a, {"inputs": ["crash"]})
    assert crashed.status_code == 500
    assert crashed.json()["detail"] == "prediction failed: RuntimeError: echo crashed"
    # The replica survives its predictor's errors.
    assert echo.predict(tokens.team_a, {"inputs": ["after"]}).status_code == 200


def test_deployments_of_two_tenants_share_the_serve_port(
    echo: Echo, control_plane: tuple[str, Tokens]
) -> None:
    tokens = control_plane[1]
    mine, theirs = echo.checkpoint("echo:1"), echo.checkpoint("other:7")
    other_app, other_route = "echo-other", "/team-b/echo"
    other_url = f"http://127.0.0.1:{echo.port}{other_route}/predict"
    both = [
        echo.app(echo.options(mine)),
        echo.app(echo.options(theirs), tenant="team-b", name=other_app, route=other_route),
    ]
    echo.serve.apply(both, "127.0.0.1", echo.port)
    deadline = time.monotonic() + 120
    while not all(
        (app := echo.serve.status().get(name)) is not None and app.status == "RUNNING"
        for name in (APP, other_app)
    ):
        assert time.monotonic() < deadline, f"not both running: {echo.serve.status()}"
        time.sleep(0.5)

    # One HTTP port, a route per deployment: each answers with its own model and tenant.
    answer = echo.predict(tokens.team_a, {"inputs": ["x"]})
    assert answer.json() == {"predictions": ["echo:1:x"], "model_version": "echo:1"}
    headers = {"Authorization": f"Bearer {tokens.team_b}"}
    other = httpx.post(other_url, json={"inputs": ["y"]}, headers=headers, timeout=60)
    assert other.json() == {"predictions": ["other:7:y"], "model_version": "other:7"}
    refused = httpx.post(
        other_url, json={"inputs": ["y"]}, headers={"Authorization": f"Bearer {tokens.team_a}"}
    )
    assert refused.status_code == 403, refused.text

    # Removing one deployment leaves the other answering; its route is gone.
    echo.serve.apply(both[:1], "127.0.0.1", echo.port)
    deadline = time.monotonic() + 90
    while other_app in echo.serve.status():
        assert time.monotonic() < deadline, "the removed deployment is still there"
        time.sleep(0.5)
    assert echo.predict(tokens.team_a, {"inputs": ["z"]}).status_code == 200
    gone = httpx.post(other_url, json={"inputs": ["y"]}, headers=headers, timeout=60)
    assert gone.status_code == 404, gone.text


def test_a_predictor_that_cannot_load_fails_the_deploy_saying_why(echo: Echo) -> None:
    echo.apply(echo.options(echo.checkpoint("echo:1")), predictor="echo_app.missing:Predictor")
    app = echo.wait(lambda app: app.status == "DEPLOY_FAILED", timeout_s=90)
    assert app.deployments["Stable"].status == "DEPLOY_FAILED"
    assert "No module named 'echo_app.missing'" in app.message


def test_concurrent_requests_are_batched(echo: Echo, control_plane: tuple[str, Tokens]) -> None:
    checkpoint = echo.checkpoint("echo:1", predict_s=0.02)
    echo.apply(echo.options(checkpoint, max_batch_size=16, batch_wait_timeout_s=0.05))
    echo.wait_running()

    async def burst() -> list[httpx.Response]:
        headers = {"Authorization": f"Bearer {control_plane[1].team_a}"}
        async with httpx.AsyncClient(headers=headers, timeout=60) as client:
            return await asyncio.gather(
                *(client.post(echo.url, json={"inputs": [f"r{n}"]}) for n in range(32))
            )

    answers = asyncio.run(burst())
    assert [a.status_code for a in answers] == [200] * 32
    assert {a.json()["predictions"][0] for a in answers} == {f"echo:1:r{n}" for n in range(32)}
    sizes = [size for size, _ in batches(checkpoint)]
    assert sum(sizes) == 32
    assert max(sizes) > 1, f"no batching: batch sizes {sizes}"
    assert max(sizes) <= 16

    # The inputs of one request are batched together as well.
    many = echo.predict(control_plane[1].team_a, {"inputs": [f"m{n}" for n in range(10)]})
    assert many.json()["predictions"] == [f"echo:1:m{n}" for n in range(10)]
    assert max(size for size, _ in batches(checkpoint)[len(sizes) :]) > 1


def test_version_change_is_in_place_and_fails_no_request(
    echo: Echo, control_plane: tuple[str, Tokens]
) -> None:
    first = echo.checkpoint("echo:1")
    second = echo.checkpoint("echo:2", load_s=2.0)  # a slow load: v1 must keep answering
    echo.apply(echo.options(first))
    echo.wait_running()

    with Load(echo.url, control_plane[1].team_a, clients=4) as load:
        time.sleep(1.0)
        echo.apply(echo.options(second))
        deadline = time.monotonic() + 60
        while not any('"echo:2"' in text for _, _, text in load.results[-8:]):
            assert time.monotonic() < deadline, "the new version never answered"
            time.sleep(0.2)
        time.sleep(1.0)

    assert load.failures() == []
    versions = [text.split('"model_version":"')[1].split('"')[0] for _, _, text in load.results]
    switched = versions.index("echo:2")
    assert set(versions[:switched]) == {"echo:1"}
    assert versions[-1] == "echo:2"
    # Same replica process before and after: reconfigured, not replaced.
    assert {pid for _, pid in batches(first)} == {pid for _, pid in batches(second)}
    assert echo.serve.status()[APP].deployments["Stable"].running_replicas == 1


def test_canary_answers_its_share_of_requests(
    echo: Echo, control_plane: tuple[str, Tokens]
) -> None:
    stable, canary = echo.checkpoint("echo:1"), echo.checkpoint("echo:2")
    echo.apply(echo.options(stable), canary=echo.options(canary), canary_percent=20)
    app = echo.wait_running()
    assert app.deployments["Canary"].running_replicas == 1

    async def requests() -> list[httpx.Response]:
        headers = {"Authorization": f"Bearer {control_plane[1].team_a}"}
        limits = httpx.Limits(max_connections=16)
        async with httpx.AsyncClient(headers=headers, limits=limits, timeout=60) as client:
            return await asyncio.gather(
                *(client.post(echo.url, json={"inputs": [n, n + 1]}) for n in range(300))
            )

    answers = asyncio.run(requests())
    assert [a.status_code for a in answers] == [200] * 300
    versions = Counter(a.json()["model_version"] for a in answers)
    assert set(versions) == {"echo:1", "echo:2"}
    assert 0.10 <= versions["echo:2"] / 300 <= 0.30, versions
    # A request goes to one model deployment whole.
    assert all(len({p.split(":")[1] for p in a.json()["predictions"]}) == 1 for a in answers)


def test_autoscaling_up_under_load_down_when_idle_and_from_zero(
    echo: Echo, control_plane: tuple[str, Tokens]
) -> None:
    checkpoint = echo.checkpoint("echo:1", predict_s=0.1)
    scaling = {"max_replicas": 2, "target_ongoing_requests": 1.0, "max_batch_size": 1}
    echo.apply(echo.options(checkpoint, **scaling))
    echo.wait_running()

    with Load(echo.url, control_plane[1].team_a, clients=8) as load:
        echo.wait(lambda app: app.deployments["Stable"].running_replicas == 2, timeout_s=60)
        deadline = time.monotonic() + 30
        while len({pid for _, pid in batches(checkpoint)}) < 2:
            assert time.monotonic() < deadline, "the second replica never answered"
            time.sleep(0.2)
    assert load.failures() == []

    # Idle: back to one replica after the downscale delay.
    echo.wait(lambda app: app.deployments["Stable"].running_replicas == 1, timeout_s=60)

    # Scale to zero (an options change: applied in place), then answer again on demand.
    echo.apply(echo.options(checkpoint, min_replicas=0, **scaling))
    # Until the last replica has stopped, not just left RUNNING: a draining replica still
    # answers what HAProxy sends it, and the next request would not start a new one.
    echo.wait(
        lambda app: (
            (stable := app.deployments["Stable"]).running_replicas == 0
            and stable.status == "HEALTHY"
        ),
        timeout_s=90,
    )
    answer = echo.predict(control_plane[1].team_a, {"inputs": ["wake"]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == ["echo:1:wake"]
    assert echo.serve.status()[APP].deployments["Stable"].running_replicas == 1
