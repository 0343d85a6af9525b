"""The Ray Serve application of one raydc model deployment.

``build_app`` (the Serve config's ``import_path``: ``raydc.workloads.serving:build_app``)
builds one or two deployments:

- ``Stable``: the application's ingress and its model. ``POST /predict`` checks the
  caller's bearer token with the control plane (``GET /v1/auth/whoami``, cached) and runs
  each input through the user's predictor behind ``@serve.batch``, in the same replica: no
  second hop, so HTTP costs one Python process per request, not two (it was ~6 ms of CPU
  per request, as much as the model itself on a 2-core machine).
- ``Canary`` (only with ``args.canary``): the canary version's model. ``Stable`` sends
  ``canary_percent`` of requests to it, one batched call per input.

The models' ``user_config`` names the model version; changing it loads the new model
inside the running replica, so a version change restarts nothing and fails no request.
"""

# No `from __future__ import annotations`: FastAPI reads the route methods' annotations
# after @serve.ingress has moved them out of this module's namespace.
import asyncio
import hashlib
import logging
import random
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import Field, ValidationError
from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle

from raydc.specs.base import StrictModel
from raydc.workloads.entrypoints import resolve_entrypoint

log = logging.getLogger(__name__)

STABLE = "Stable"
CANARY = "Canary"
MAX_INPUTS = 1024


class ServeArgs(StrictModel):
    """The application's ``args``: which raydc deployment this is, and its predictor."""

    tenant: str = Field(min_length=1)
    name: str = Field(min_length=1)
    auth_url: str = Field(min_length=1, description="the control plane, as replicas reach it")
    predictor: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    canary: bool = False


class ModelConfig(StrictModel):
    """``user_config`` of ``Stable`` / ``Canary``."""

    model_version: str = Field(min_length=1)
    checkpoint_dir: str = Field(min_length=1)
    max_batch_size: int = Field(default=1, ge=1)
    batch_wait_timeout_s: float = Field(default=0.01, ge=0)


class StableConfig(ModelConfig):
    """``user_config`` of ``Stable``: its model, and the share of requests for ``Canary``."""

    canary_percent: float = Field(default=0.0, ge=0, le=100)


class PredictionError(ValueError):
    """The predictor refused an input (it raised ValueError): the caller's fault, 422."""


def _config_error(what: str, error: ValidationError) -> ValueError:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or what}: {e['msg']}" for e in error.errors()
    )
    return ValueError(f"invalid {what}: {problems}")


@dataclass(frozen=True)
class _Model:
    predictor: Any
    version: str
    checkpoint_dir: str


@dataclass(frozen=True)
class _Refused:
    message: str


class ModelServer:
    """One model version behind dynamic batching; reloaded in place on a version change.

    Other deployments call ``predict_one`` through a handle. (Not ``__call__``: in the
    ingress subclass that name is Serve's ASGI entry point.)
    """

    CONFIG: type[ModelConfig] = ModelConfig  # what its user_config must be

    def __init__(self, predictor: str) -> None:
        self._predictor_class = resolve_entrypoint(predictor)
        self._model: _Model | None = None

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        try:
            config = self.CONFIG.model_validate(user_config)
        except ValidationError as error:
            raise _config_error("user_config", error) from error
        await self._load(config)

    async def _load(self, config: ModelConfig) -> None:
        current = self._model
        if current is None or (current.version, current.checkpoint_dir) != (
            config.model_version,
            config.checkpoint_dir,
        ):
            # Loaded beside the old model, which keeps answering until this one is ready;
            # batches already running finish on the model they started with.
            predictor = await asyncio.to_thread(self._predictor_class, config.checkpoint_dir)
            self._model = _Model(predictor, config.model_version, config.checkpoint_dir)
            log.info("serving model %s from %s", config.model_version, config.checkpoint_dir)
        batched: Any = self._predict_batch  # @serve.batch's setters are untyped
        batched.set_max_batch_size(config.max_batch_size)
        batched.set_batch_wait_timeout_s(config.batch_wait_timeout_s)

    async def predict_one(self, item: Any) -> tuple[Any, str]:
        """One input -> (prediction, model version); batched with concurrent calls."""
        outcome = await self._predict_batch(item)
        if isinstance(outcome, _Refused):
            raise PredictionError(outcome.message)
        return outcome

    @serve.batch(max_batch_size=1, batch_wait_timeout_s=0.01)
    async def _predict_batch(self, items: list[Any]) -> list[tuple[Any, str] | _Refused]:
        model = self._model
        if model is None:
            raise RuntimeError("no model loaded: the deployment's user_config is missing")
        try:
            predictions = await asyncio.to_thread(model.predictor.predict, items)
        except ValueError as error:
            if len(items) == 1:
                return [_Refused(str(error))]
            # One bad input must not fail the other callers batched with it.
            return [await self._predict_alone(model, item) for item in items]
        if not isinstance(predictions, list) or len(predictions) != len(items):
            got = len(predictions) if isinstance(predictions, list) else type(predictions)
            raise RuntimeError(f"predict() returned {got} predictions for {len(items)} inputs")
        return [(prediction, model.version) for prediction in predictions]

    @staticmethod
    async def _predict_alone(model: _Model, item: Any) -> tuple[Any, str] | _Refused:
        try:
            [prediction] = await asyncio.to_thread(model.predictor.predict, [item])
        except ValueError as error:
            return _Refused(str(error))
        return prediction, model.version


@dataclass(frozen=True)
class Principal:
    tenant: str
    role: str
    name: str


class AuthUnavailable(Exception):
    """The control plane could not be asked who a token belongs to."""


class TokenChecker:
    """Who a bearer token belongs to, asked of the control plane and cached.

    Keys are sha256 of the token, so the cache holds no token. A known token is trusted for
    ``ttl_s`` (a revoked one keeps working that long), an unknown one refused for
    ``denied_ttl_s``. Concurrent first requests with the same token share one lookup.
    """

    def __init__(
        self,
        auth_url: str,
        ttl_s: float = 30.0,
        denied_ttl_s: float = 5.0,
        max_entries: int = 4096,
        timeout_s: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._url = f"{auth_url.rstrip('/')}/v1/auth/whoami"
        self._ttl_s = ttl_s
        self._denied_ttl_s = denied_ttl_s
        self._max_entries = max_entries
        self._timeout_s = timeout_s
        self._cache: OrderedDict[str, tuple[float, Principal | None]] = OrderedDict()
        self._pending: dict[str, asyncio.Future[Principal | None]] = {}
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    async def principal(self, token: str) -> Principal | None:
        """The token's owner, or None for a token the control plane does not know."""
        key = hashlib.sha256(token.encode()).hexdigest()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > time.monotonic():
            self._cache.move_to_end(key)
            return cached[1]
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Principal | None] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            principal = await self._ask(token)
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved: no "never retrieved" warning without waiters
            raise
        else:
            future.set_result(principal)
            self._remember(key, principal)
            return principal
        finally:
            del self._pending[key]

    async def _ask(self, token: str) -> Principal | None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout_s, transport=self._transport)
        try:
            response = await self._client.get(
                self._url, headers={"Authorization": f"Bearer {token}"}
            )
        except httpx.HTTPError as error:
            raise AuthUnavailable(f"{type(error).__name__}: {error}") from error
        if response.status_code == 401:
            return None
        if response.status_code != 200:
            raise AuthUnavailable(f"whoami answered {response.status_code}")
        body = response.json()
        return Principal(tenant=body["tenant"], role=body["role"], name=body["name"])

    def _remember(self, key: str, principal: Principal | None) -> None:
        ttl = self._ttl_s if principal is not None else self._denied_ttl_s
        self._cache[key] = (time.monotonic() + ttl, principal)
        self._cache.move_to_end(key)
        while len(self._cache) > self._max_entries:
            self._cache.popitem(last=False)


def _error(status: int, detail: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _inputs_of(body: Any) -> list[Any] | str:
    """The request's inputs, or what is wrong with the body."""
    if not isinstance(body, dict):
        return 'body: must be a JSON object {"inputs": [...]}'
    if "inputs" not in body:
        return "inputs: field required"
    inputs = body["inputs"]
    if not isinstance(inputs, list):
        return "inputs: must be a list"
    if not inputs:
        return "inputs: must not be empty"
    if len(inputs) > MAX_INPUTS:
        return f"inputs: at most {MAX_INPUTS} per request, got {len(inputs)}"
    return inputs


def _cause_message(error: BaseException) -> str:
    """The predictor's own message: Ray wraps a replica's exception with its traceback."""
    cause = getattr(error, "cause", None)
    error = cause if isinstance(cause, BaseException) else error
    return str(error) if isinstance(error, ValueError) else f"{type(error).__name__}: {error}"


api = FastAPI(title="raydc model deployment", docs_url=None, redoc_url=None)


class ModelIngress(ModelServer):
    """``Stable``: the HTTP API, the token check and the stable model in one replica."""

    def __init__(self, canary: DeploymentHandle | None, args: dict[str, Any]) -> None:
        self._args = ServeArgs.model_validate(args)
        super().__init__(self._args.predictor)
        # Calls to the canary over Serve's gRPC data plane rather than as Ray actor tasks:
        # ~15% less CPU per request. Nothing here passes ObjectRefs, which it cannot.
        self._canary = canary.options(_by_reference=False) if canary is not None else None
        self._canary_percent = 0.0
        self._tokens = TokenChecker(self._args.auth_url)
        self._random = random.Random()

    CONFIG = StableConfig

    async def _load(self, config: ModelConfig) -> None:
        await super()._load(config)
        assert isinstance(config, StableConfig)
        self._canary_percent = config.canary_percent

    @api.get("/healthz")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok", "deployment": f"{self._args.tenant}/{self._args.name}"}

    @api.post("/predict")
    async def predict(self, request: Request) -> JSONResponse:
        refused = await self._authorize(request)
        if refused is not None:
            return refused
        try:
            body = await request.json()
        except ValueError:
            return _error(422, "body: must be JSON")
        inputs = _inputs_of(body)
        if isinstance(inputs, str):
            return _error(422, inputs)
        canary = self._canary
        use_canary = canary is not None and self._random.random() * 100 < self._canary_percent
        try:
            if use_canary and canary is not None:
                answers = await asyncio.gather(*(canary.predict_one.remote(x) for x in inputs))
            else:
                answers = await asyncio.gather(*(self.predict_one(x) for x in inputs))
        except ValueError as error:  # PredictionError, or Ray's subclass of it from the canary
            return _error(422, _cause_message(error))
        except Exception as error:  # a broken predictor or a lost replica: no traceback out
            log.exception("prediction failed")
            return _error(500, f"prediction failed: {_cause_message(error)[:300]}")
        predictions = [prediction for prediction, _ in answers]
        versions = [version for _, version in answers]
        content: dict[str, Any] = {"predictions": predictions}
        if len(set(versions)) == 1:
            content["model_version"] = versions[0]
        else:
            # Only while a version change reaches the replica: say which answered what.
            content["model_version"] = max(set(versions), key=versions.count)
            content["model_versions"] = versions
        return JSONResponse(content)

    async def _authorize(self, request: Request) -> JSONResponse | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return _error(401, "missing bearer token: send 'Authorization: Bearer <token>'")
        try:
            principal = await self._tokens.principal(token)
        except AuthUnavailable as error:
            log.warning("cannot check a token with the control plane: %s", error)
            return _error(503, "cannot check the token now; retry")
        if principal is None:
            return _error(401, "unknown or revoked token")
        if principal.tenant != self._args.tenant and principal.role != "admin":
            return _error(403, f"this deployment belongs to tenant '{self._args.tenant}'")
        return None


# Decorators applied as calls: mypy ignores what a class decorator returns.
_model_deployment = serve.deployment()(ModelServer)
_ingress_deployment = serve.deployment()(serve.ingress(api)(ModelIngress))


def build_app(args: dict[str, Any]) -> Application:
    """Serve's application builder: ``args`` as described by :class:`ServeArgs`."""
    try:
        parsed = ServeArgs.model_validate(args)
    except ValidationError as error:
        raise _config_error("args", error) from error
    canary = (
        _model_deployment.options(name=CANARY).bind(parsed.predictor) if parsed.canary else None
    )
    return _ingress_deployment.options(name=STABLE).bind(canary, parsed.model_dump())
