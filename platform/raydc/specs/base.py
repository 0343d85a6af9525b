"""The base of every spec, and the number types hostile input cannot slip through.

Pydantic's lax mode turns ``true`` into 1, ``1e30`` into an int and accepts ``Infinity``
and ``NaN`` as floats. A spec is written by a user, so its numbers are strict: an int
field takes an integer and nothing else, a float field takes a finite number (an integer
or a float, never a boolean), and every bound is explicit.
"""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, Strict

# The largest integer any spec field accepts: far beyond any real count, within a
# signed 64-bit database column.
MAX_INT = 2**53
# The largest amount of one resource (cores, GPUs, GiB) any spec field accepts.
MAX_AMOUNT = 1e9


class StrictModel(BaseModel):
    """Base of every spec: an unknown key is an error, not a silently ignored field;
    a float is finite."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# An integer that is really an integer: no bool, no float, no numeric string.
StrictInt = Annotated[int, Strict(), Field(ge=-MAX_INT, le=MAX_INT)]
# A finite number: int or float, never a bool or a string, never NaN or infinite.
FiniteFloat = Annotated[float, Strict(), Field(allow_inf_nan=False)]
# An amount of a resource: a finite number in [0, MAX_AMOUNT].
Amount = Annotated[float, Strict(), Field(ge=0, le=MAX_AMOUNT, allow_inf_nan=False)]
