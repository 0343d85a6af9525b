"""Model deployments end to end on a real local Ray: train, deploy through the control
plane, predict over Serve's HTTP port with tenant tokens, change the version under load,
split traffic to a canary, scale to zero and back, delete."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from raydc.cluster.serve import RayServe
from tests.integration.conftest import Api

pytestmark = pytest.mark.workload

HEADLINES = ["profits soared to a record this quarter", "the company cut its forecast"]


def wait_until(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def make_tenant_token(api: Api, tenant: str) -> dict[str, str]:
    assert api.http.post("/v1/tenants", json={"name": tenant, "quota": {}}).status_code == 201
    response = api.http.post("/v1/tokens", json={"tenant": tenant, "role": "member", "name": "t"})
    return {"Authorization": f"Bearer {response.json()['token']}"}


@pytest.fixture
def tenant_api(api: Api) -> Iterator[tuple[Api, dict[str, str], dict[str, str]]]:
    """The control plane with tenants team-a (its own client) and team-b (a token)."""
    a = make_tenant_token(api, "team-a")
    b = make_tenant_token(api, "team-b")
    client = Api(httpx.Client(base_url=str(api.http.base_url), headers=a, timeout=30))
    try:
        yield client, a, b
    finally:
        for deployment in client.http.get("/v1/deployments").json():
            client.http.delete(f"/v1/deployments/{deployment['name']}")
        client.http.close()


def deployment(api: Api, name: str) -> dict[str, Any]:
    response = api.http.get(f"/v1/deployments/{name}")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def healthy(api: Api, name: str, timeout_s: float = 240) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        d = deployment(api, name)
        done = d["status"] == "HEALTHY" and d["applied_generation"] == d["generation"]
        return d if done else None

    return wait_until(check, timeout_s, f"deployment {name} HEALTHY")  # type: ignore[no-any-return]


def test_train_deploy_predict_roll_out_canary_scale_and_delete(
    tenant_api: tuple[Api, dict[str, str], dict[str, str]], ray_head: Any
) -> None:
    api, token_a, token_b = tenant_api
    spec = {
        "kind": "train", "name": "sentiment", "code": {"app": "sentiment"},
        "entrypoint": "sentiment.train:train_loop",
        "config": {"epochs": 1, "num_examples": 1500},
        "resources": {"workers": 1, "cpus_per_worker": 1}, "max_retries": 0,
    }  # fmt: skip
    jobs = [api.submit(spec)["id"] for _ in range(2)]
    for job_id in jobs:
        assert api.wait_status(job_id, "SUCCEEDED", timeout_s=300)["result"]["model"]
    created = api.http.post(
        "/v1/deployments",
        json={"name": "sent", "model": "sentiment:1",
              "resources": {"cpus_per_replica": 0.25},
              "autoscaling": {"min_replicas": 1, "max_replicas": 2, "upscale_delay_s": 1,
                              "downscale_delay_s": 3},
              "batching": {"max_batch_size": 8, "batch_wait_timeout_s": 0.005}},
    )  # fmt: skip
    assert created.status_code == 201, created.text
    d = healthy(api, "sent")
    url = d["url"]
    assert url.endswith("/serve/team-a/sent/predict") and d["replicas"] == 1

    answer = httpx.post(url, json={"inputs": HEADLINES}, headers=token_a, timeout=60)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model_version"] == "sentiment:1"
    assert len(body["predictions"]) == 2
    assert set(body["predictions"]) <= {"negative", "neutral", "positive"}
    assert httpx.post(url, json={"inputs": HEADLINES}, timeout=30).status_code == 401
    assert (
        httpx.post(url, json={"inputs": HEADLINES}, headers=token_b, timeout=30).status_code == 403
    )
    bad = httpx.post(url, json={"input": HEADLINES}, headers=token_a, timeout=30)
    assert bad.status_code == 422 and "inputs" in bad.text

    # A new version under steady load: every request is answered.
    outcomes: Counter[str] = Counter()
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(headers=token_a, timeout=60) as http:
            while not stop.is_set():
                response = http.post(url, json={"inputs": HEADLINES[:1]})
                key = response.json()["model_version"] if response.status_code == 200 else None
                outcomes[key or f"HTTP {response.status_code}"] += 1

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(2)
        patched = api.http.patch("/v1/deployments/sent", json={"model": "sentiment:2"})
        assert patched.status_code == 200, patched.text
        healthy(api, "sent")
        wait_until(lambda: outcomes["sentiment:2"] > 20, 60, "answers from sentiment:2")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert set(outcomes) == {"sentiment:1", "sentiment:2"}, outcomes

    # A canary at 20%: about a fifth of the requests answered by sentiment:1.
    api.http.patch("/v1/deployments/sent", json={"canary": {"model": "sentiment:1", "percent": 20}})
    healthy(api, "sent")
    versions: Counter[str] = Counter()
    with httpx.Client(headers=token_a, timeout=60) as http:
        for _ in range(300):
            response = http.post(url, json={"inputs": HEADLINES[:1]})
            assert response.status_code == 200, response.text
            versions[response.json()["model_version"]] += 1
    share = versions["sentiment:1"] / 300
    assert 0.12 <= share <= 0.30, versions
    assert deployment(api, "sent")["canary_replicas"] >= 1

    # Scale to zero when idle, and back up on the next request.
    api.http.patch(
        "/v1/deployments/sent",
        json={"canary": None, "autoscaling": {"min_replicas": 0, "max_replicas": 2,
                                              "upscale_delay_s": 1, "downscale_delay_s": 2}},
    )  # fmt: skip
    healthy(api, "sent")
    wait_until(lambda: deployment(api, "sent")["replicas"] == 0, 120, "scale to zero")
    cold = httpx.post(url, json={"inputs": HEADLINES}, headers=token_a, timeout=120)
    assert cold.status_code == 200 and cold.json()["model_version"] == "sentiment:2"
    wait_until(lambda: deployment(api, "sent")["replicas"] >= 1, 60, "a replica after a request")

    # Delete: the row goes once Serve has removed the application, and the route with it.
    assert api.http.delete("/v1/deployments/sent").status_code == 202
    wait_until(lambda: api.http.get("/v1/deployments/sent").status_code == 404, 120, "deleted")
    serve = RayServe(ray_head.dashboard_url, ray_head.auth_token)
    assert "team-a.sent" not in serve.status()
    gone = httpx.post(url, json={"inputs": HEADLINES}, headers=token_a, timeout=30)
    assert gone.status_code == 404
