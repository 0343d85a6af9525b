"""The Python SDK: a thin typed client over raydc's REST API (the CLI uses it too).

from raydc.client import Client
client = Client()                      # RAYDC_URL / RAYDC_TOKEN or ~/.config/raydc/config.toml
job = client.submit_job(yaml.safe_load(open("apps/sentiment/train.yaml")))
client.wait(job["id"])
"""

from __future__ import annotations

import io
import os
import time
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8080"
CONFIG_PATH = Path("~/.config/raydc/config.toml").expanduser()
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}
_SKIP_DIRS = {".git", "__pycache__", ".venv", "node_modules", ".mypy_cache", ".pytest_cache"}


class ApiError(Exception):
    def __init__(self, status_code: int, detail: Any) -> None:
        super().__init__(f"{status_code}: {format_detail(detail)}")
        self.status_code = status_code
        self.detail = detail


def format_detail(detail: Any) -> str:
    """A 422's list of field errors as 'field.path: message' lines."""
    if isinstance(detail, list):
        lines = []
        for item in detail:
            if isinstance(item, dict) and "loc" in item:
                loc = ".".join(str(p) for p in item["loc"] if p != "body") or "body"
                lines.append(f"{loc}: {item.get('msg')}")
            else:
                lines.append(str(item))
        return "; ".join(lines)
    return str(detail)


def load_config() -> tuple[str, str | None]:
    url, token = os.environ.get("RAYDC_URL"), os.environ.get("RAYDC_TOKEN")
    if (url is None or token is None) and CONFIG_PATH.exists():
        data = tomllib.loads(CONFIG_PATH.read_text())
        url = url or data.get("url")
        token = token or data.get("token")
    return url or DEFAULT_URL, token


def zip_directory(directory: Path) -> bytes:
    """Zip a working directory deterministically (same files -> same content address)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.rglob("*")):
            relative = path.relative_to(directory)
            if any(part in _SKIP_DIRS for part in relative.parts) or path.is_symlink():
                continue
            if path.is_file():
                info = zipfile.ZipInfo(relative.as_posix(), date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def _tenant(tenant: str | None) -> dict[str, str]:
    """The ``?tenant=`` of a name-taking route, when one is given."""
    return {"tenant": tenant} if tenant is not None else {}


# What `apply_deployment` changes on an existing deployment (PATCH fields).
PATCHABLE = ("model", "autoscaling", "batching", "canary", "resources")


class Client:
    def __init__(
        self, url: str | None = None, token: str | None = None, timeout_s: float = 30.0
    ) -> None:
        default_url, default_token = load_config()
        self.url = (url or default_url).rstrip("/")
        self.token = token or default_token
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.RemoteProtocolError:
            # A pooled keep-alive connection the server closed just as it was reused:
            # nothing reached the handler. Only a read is safe to send again.
            if method != "GET":
                raise
            response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text
            raise ApiError(response.status_code, detail)
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text

    # -- health, admin ------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return self._request("GET", "/healthz")

    def create_tenant(
        self,
        name: str,
        quota: dict[str, float] | None = None,
        weight: float | None = None,
        borrowing_limit: dict[str, float | None] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "quota": quota or {}}
        if weight is not None:
            body["weight"] = weight
        if borrowing_limit is not None:
            body["borrowing_limit"] = borrowing_limit
        return self._request("POST", "/v1/tenants", json=body)

    def list_tenants(self) -> list[dict[str, Any]]:
        return self._request("GET", "/v1/tenants")

    def set_quota(self, tenant: str, quota: dict[str, float | None]) -> dict[str, Any]:
        return self._request("PUT", f"/v1/tenants/{tenant}/quota", json=quota)

    def set_tenant_scheduling(
        self,
        name: str,
        weight: float | None = None,
        borrowing_limit: dict[str, float | None] | None = None,
    ) -> dict[str, Any]:
        """Set a tenant's fair-share weight and borrowing limit (`{cpu, gpu, memory_gb}`,
        None = no limit). Like the quota this replaces the settings: one left out takes
        its default (weight 1, no borrowing limit)."""
        body: dict[str, Any] = {}
        if weight is not None:
            body["weight"] = weight
        if borrowing_limit is not None:
            body["borrowing_limit"] = borrowing_limit
        return self._request("PUT", f"/v1/tenants/{name}/scheduling", json=body)

    def create_token(
        self, tenant: str, role: str, name: str, expires_in_s: int | None = None
    ) -> dict[str, Any]:
        """A new token (`token` is shown only here); `expires_in_s` None = never expires."""
        body: dict[str, Any] = {"tenant": tenant, "role": role, "name": name}
        if expires_in_s is not None:
            body["expires_in_s"] = expires_in_s
        return self._request("POST", "/v1/tokens", json=body)

    def list_tokens(
        self, tenant: str | None = None, include_inactive: bool = False
    ) -> list[dict[str, Any]]:
        """Tokens (never their secrets), newest first; revoked and expired ones on request."""
        params: dict[str, Any] = {"all": include_inactive}
        if tenant is not None:
            params["tenant"] = tenant
        return self._request("GET", "/v1/tokens", params=params)

    def revoke_token(self, token_id: str) -> dict[str, Any]:
        return self._request("DELETE", f"/v1/tokens/{token_id}")

    # -- code and jobs ------------------------------------------------------------
    def upload_code(self, directory: Path) -> str:
        data = zip_directory(directory)
        headers = {"content-type": "application/zip"}
        return self._request("POST", "/v1/code", content=data, headers=headers)["ref"]

    def submit_job(self, spec: dict[str, Any] | str) -> dict[str, Any]:
        """Submit a spec given as a dict (sent as JSON) or as YAML text."""
        if isinstance(spec, str):
            headers = {"content-type": "application/yaml"}
            return self._request("POST", "/v1/jobs", content=spec, headers=headers)
        return self._request("POST", "/v1/jobs", json=spec)

    def list_jobs(self, status: str | None = None, kind: str | None = None,
                  limit: int = 50, offset: int = 0) -> dict[str, Any]:  # fmt: skip
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if status:
            params["status"] = status
        if kind:
            params["kind"] = kind
        return self._request("GET", "/v1/jobs", params=params)

    def get_job(self, job_id: str) -> dict[str, Any]:
        return self._request("GET", f"/v1/jobs/{job_id}")

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        return self._request("POST", f"/v1/jobs/{job_id}/cancel")

    def job_events(self, job_id: str) -> list[dict[str, Any]]:
        return self._request("GET", f"/v1/jobs/{job_id}/events")

    def job_logs(self, job_id: str) -> str:
        return str(self._request("GET", f"/v1/jobs/{job_id}/logs"))

    def follow_logs(self, job_id: str) -> Iterator[str]:
        with self._http.stream(
            "GET", f"/v1/jobs/{job_id}/logs", params={"follow": "true"}, timeout=None
        ) as response:
            if response.status_code >= 400:
                response.read()
                raise ApiError(response.status_code, response.json().get("detail"))
            yield from response.iter_text()

    def wait(self, job_id: str, timeout_s: float = 3600, poll_s: float = 1.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.get_job(job_id)
            if job["status"] in TERMINAL:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout_s}s")
            time.sleep(poll_s)

    def queue(self) -> list[dict[str, Any]]:
        return self._request("GET", "/v1/queue")

    # -- models, cluster ----------------------------------------------------------
    # ``tenant``: whose model or deployment a name means. An admin gives it when several
    # tenants have one of that name (the server answers 409 naming them); a tenant's
    # user needs it never (only their own tenant is visible).
    def list_models(self, tenant: str | None = None) -> list[dict[str, Any]]:
        return self._request("GET", "/v1/models", params=_tenant(tenant))

    def model_versions(self, name: str, tenant: str | None = None) -> list[dict[str, Any]]:
        return self._request("GET", f"/v1/models/{name}/versions", params=_tenant(tenant))

    def model_version(self, name: str, version: int, tenant: str | None = None) -> dict[str, Any]:
        path = f"/v1/models/{name}/versions/{version}"
        return self._request("GET", path, params=_tenant(tenant))

    def cluster(self) -> dict[str, Any]:
        return self._request("GET", "/v1/cluster")

    # -- deployments ----------------------------------------------------------------
    def create_deployment(self, spec: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", "/v1/deployments", json=spec)

    def list_deployments(self, tenant: str | None = None) -> list[dict[str, Any]]:
        return self._request("GET", "/v1/deployments", params=_tenant(tenant))

    def get_deployment(self, name: str, tenant: str | None = None) -> dict[str, Any]:
        return self._request("GET", f"/v1/deployments/{name}", params=_tenant(tenant))

    def patch_deployment(
        self, name: str, changes: dict[str, Any], tenant: str | None = None
    ) -> dict[str, Any]:
        path = f"/v1/deployments/{name}"
        return self._request("PATCH", path, json=changes, params=_tenant(tenant))

    def delete_deployment(self, name: str, tenant: str | None = None) -> dict[str, Any]:
        return self._request("DELETE", f"/v1/deployments/{name}", params=_tenant(tenant))

    def apply_deployment(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Create the deployment, or change it to match ``spec`` if it exists
        (``kubectl apply``): model version, autoscaling, batching, canary, resources."""
        try:
            return self.create_deployment(spec)
        except ApiError as error:
            if error.status_code != 409:
                raise
        changes = {k: spec.get(k) for k in PATCHABLE if k in spec or k == "canary"}
        # A deployment is created in the caller's own tenant: change that one, not another
        # tenant's of the same name (an admin sees them all).
        own = self._request("GET", "/v1/auth/whoami")["tenant"]
        return self.patch_deployment(spec["name"], changes, tenant=own)

    def wait_deployment(
        self, name: str, status: str = "HEALTHY", timeout_s: float = 600, poll_s: float = 1.0,
        tenant: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Wait until the deployment's current generation is applied and has ``status``."""
        deadline = time.monotonic() + timeout_s
        while True:
            deployment = self.get_deployment(name, tenant)
            applied = deployment["applied_generation"] == deployment["generation"]
            if applied and deployment["status"] == status:
                return deployment
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"deployment {name} still {deployment['status']} after {timeout_s}s: "
                    f"{deployment.get('message') or ''}"
                )
            time.sleep(poll_s)

    def predict(
        self, name: str, inputs: list[Any], timeout_s: float = 60, tenant: str | None = None
    ) -> dict[str, Any]:
        """Call a deployment's predict URL with this client's token."""
        url = self.get_deployment(name, tenant)["url"]
        response = httpx.post(
            url, json={"inputs": inputs}, headers=self._http.headers, timeout=timeout_s
        )
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text
            raise ApiError(response.status_code, detail)
        return response.json()
