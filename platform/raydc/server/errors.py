"""Domain errors raised by services; one handler in app.py maps them to HTTP."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    status_code = 400

    def __init__(self, detail: Any) -> None:
        super().__init__(str(detail))
        self.detail = detail


class Unauthorized(DomainError):
    status_code = 401


class Forbidden(DomainError):
    status_code = 403


class NotFound(DomainError):
    status_code = 404


class Conflict(DomainError):
    status_code = 409


class PayloadTooLarge(DomainError):
    status_code = 413


class InvalidInput(DomainError):
    """422 with FastAPI's shape: a list of {loc, msg, type} naming each bad field."""

    status_code = 422

    @classmethod
    def field(cls, loc: tuple[str | int, ...], message: str) -> InvalidInput:
        return cls([{"loc": ["body", *loc], "msg": message, "type": "value_error"}])
