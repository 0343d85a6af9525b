"""The OpenAPI document as the API really behaves.

FastAPI derives the document from route signatures, which misses two things here: the
routes that read their raw body (job and deployment specs as JSON or YAML, a zip of
code) declare no request body, and the errors that services raise as domain errors
(401/403/404/409/413/422, and 429 from the per-client limit) appear nowhere. This
module adds both to FastAPI's own document, without the route modules knowing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI, routing
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import TypeAdapter

from raydc.server.deps import current_principal
from raydc.specs.deployments import DeploymentPatch, DeploymentSpec
from raydc.specs.jobs import JOB_SPEC_ADAPTER

_REF = "#/components/schemas/{model}"
_ERROR_REF = {"$ref": "#/components/schemas/ErrorDetail"}
_VALIDATION_REF = {"$ref": "#/components/schemas/HTTPValidationError"}

# Operations whose body the route reads raw: (method, path) -> (schema name, schema).
_SPEC_BODIES: dict[tuple[str, str], tuple[str, TypeAdapter[Any]]] = {
    ("post", "/v1/jobs"): ("JobSpec", JOB_SPEC_ADAPTER),
    ("post", "/v1/deployments"): ("DeploymentSpec", TypeAdapter(DeploymentSpec)),
    ("patch", "/v1/deployments/{name}"): ("DeploymentPatch", TypeAdapter(DeploymentPatch)),
}
_ZIP_BODIES = {("post", "/v1/code")}

# Errors that only reading the services shows (every other status follows from the
# route: 401/403 from its auth dependency, 404 from a path parameter, 422 from input).
_CONFLICTS = {
    ("post", "/v1/tenants"),  # the tenant exists
    ("post", "/v1/jobs/{job_id}/cancel"),  # the job already finished
    ("post", "/v1/deployments"),  # the deployment exists
    ("patch", "/v1/deployments/{name}"),  # the deployment is being deleted
}
_TOO_LARGE = {("post", "/v1/jobs"), ("post", "/v1/deployments"),
              ("patch", "/v1/deployments/{name}"), *_ZIP_BODIES}  # fmt: skip
_TEXT_RESPONSES = {
    ("get", "/v1/jobs/{job_id}/logs"): "text/plain",
    ("get", "/metrics"): "text/plain",
}
# Paths the per-client in-flight limit leaves alone (server/connections.py).
_NOT_LIMITED = {"/healthz"}

_STATUS_TEXT = {
    400: "the body is not JSON",
    401: "missing, invalid, expired or revoked bearer token",
    403: "the token's role or scope may not do this",
    404: "no such object, or it belongs to another tenant",
    409: "conflicts with the object's current state",
    413: "the body is over the size limit",
    422: "invalid input; each entry names the field",
    429: "too many requests in flight from this client; retry after Retry-After seconds",
}


def _dependency_calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from _dependency_calls(dependency)


def _api_routes(app: FastAPI) -> Iterator[Any]:
    """Each API route with its full path; FastAPI >= 0.16x keeps included routers nested."""
    contexts = getattr(routing, "iter_route_contexts", None)
    for route in contexts(app.routes) if contexts is not None else app.routes:
        if isinstance(getattr(route, "original_route", route), APIRoute):
            yield route


def _authenticated(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of each operation that depends on the bearer token."""
    found: set[tuple[str, str]] = set()
    for route in _api_routes(app):
        if current_principal in _dependency_calls(route.dependant):
            found.update((method.lower(), route.path_format) for method in route.methods)
    return found


def _merge_schema(components: dict[str, Any], name: str, adapter: TypeAdapter[Any]) -> None:
    schema = adapter.json_schema(ref_template=_REF)
    for def_name, definition in schema.pop("$defs", {}).items():
        existing = components.setdefault(def_name, definition)
        if existing != definition:
            raise ValueError(f"two different schemas named {def_name!r} in the OpenAPI document")
    components[name] = schema


def _takes_tenant(operation: dict[str, Any]) -> bool:
    """An admin addressing a name may need ``?tenant=`` (server/services/addressing.py)."""
    return any(
        p.get("name") == "tenant" and p.get("in") == "query"
        for p in operation.get("parameters", [])
    )


def _names_tenant(operation: dict[str, Any], schemas: dict[str, Any]) -> bool:
    """A ``tenant`` in the query or the JSON body: an unknown tenant is a 404."""
    if _takes_tenant(operation):
        return True
    body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    ref = body.get("schema", {}).get("$ref", "")
    schema = schemas.get(ref.removeprefix("#/components/schemas/"), {})
    return "tenant" in schema.get("properties", {})


def _error_response(status: int) -> dict[str, Any]:
    schema = _VALIDATION_REF if status == 422 else _ERROR_REF
    response: dict[str, Any] = {
        "description": _STATUS_TEXT[status],
        "content": {"application/json": {"schema": schema}},
    }
    if status == 401:
        response["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
    if status == 429:
        response["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
    return response


def build_openapi(app: FastAPI) -> dict[str, Any]:
    document = get_openapi(title=app.title, version=app.version, routes=app.routes)
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["ErrorDetail"] = {
        "title": "ErrorDetail",
        "type": "object",
        "required": ["detail"],
        "properties": {
            "detail": {"anyOf": [{"type": "string"}, {"type": "array"}, {"type": "object"}]}
        },
    }
    schemas.setdefault("HTTPValidationError", {
        "title": "HTTPValidationError", "type": "object",
        "properties": {"detail": {"type": "array", "items": {"type": "object"}}},
    })  # fmt: skip
    components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    for name, adapter in _SPEC_BODIES.values():
        _merge_schema(schemas, name, adapter)
    authenticated = _authenticated(app)

    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            key = (method, path)
            responses: dict[str, Any] = operation.setdefault("responses", {})
            if key in _SPEC_BODIES:
                ref = {"$ref": f"#/components/schemas/{_SPEC_BODIES[key][0]}"}
                operation["requestBody"] = {
                    "required": True,
                    "description": "the spec as JSON, or as YAML (Content-Type application/yaml)",
                    "content": {"application/json": {"schema": ref},
                                "application/yaml": {"schema": ref}},
                }  # fmt: skip
            if key in _ZIP_BODIES:
                operation["requestBody"] = {
                    "required": True,
                    "description": "a zip of the working directory",
                    "content": {
                        "application/zip": {"schema": {"type": "string", "format": "binary"}}
                    },
                }
            if key in _TEXT_RESPONSES:
                ok = next(code for code in responses if code.startswith("2"))
                responses[ok]["content"] = {_TEXT_RESPONSES[key]: {"schema": {"type": "string"}}}
            statuses = set()
            if key in authenticated:
                operation["security"] = [{"bearer": []}]
                statuses |= {401, 403}
            if "{" in path or _names_tenant(operation, schemas):
                statuses.add(404)
            if key in _CONFLICTS or ("{" in path and _takes_tenant(operation)):
                statuses.add(409)  # ?tenant= unset and the name is in several tenants
            if key in _TOO_LARGE:
                statuses.add(413)
            if operation.get("parameters") or "requestBody" in operation:
                statuses.add(422)
            if "requestBody" in operation and key not in _SPEC_BODIES and key not in _ZIP_BODIES:
                statuses.add(400)  # FastAPI's own answer to a body that is not JSON
            if path not in _NOT_LIMITED:
                statuses.add(429)
            for status in sorted(statuses):
                responses[str(status)] = _error_response(status)
    return document


def install_openapi(app: FastAPI) -> None:
    """Serve :func:`build_openapi`'s document at /openapi.json, built once on first use."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
