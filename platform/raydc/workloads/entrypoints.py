"""Resolve a spec's ``module.path:function`` entrypoint inside the job's code."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


class EntrypointError(Exception):
    """The entrypoint cannot be imported or is not callable."""


def resolve_entrypoint(entrypoint: str) -> Callable[..., Any]:
    module_name, _, attribute = entrypoint.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # the user's module may raise anything while importing
        raise EntrypointError(
            f"cannot import entrypoint module '{module_name}': {type(error).__name__}: {error}"
        ) from error
    function = getattr(module, attribute, None)
    if function is None:
        raise EntrypointError(f"module '{module_name}' has no attribute '{attribute}'")
    if not callable(function):
        raise EntrypointError(f"entrypoint '{entrypoint}' is not callable")
    return function
