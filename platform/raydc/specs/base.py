from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Base of every spec: an unknown key is an error, not a silently ignored field."""

    model_config = ConfigDict(extra="forbid")
