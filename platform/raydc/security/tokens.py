"""API tokens: random, shown once, stored only as a sha256 hash."""

from __future__ import annotations

import hashlib
import secrets

TOKEN_PREFIX = "rdc_"


def generate_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    # Tokens carry 256 random bits, so a plain (unsalted) hash is not brute-forceable and
    # lets the lookup be a single indexed equality match.
    return hashlib.sha256(token.encode()).hexdigest()
