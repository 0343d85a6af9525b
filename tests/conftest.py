"""Shared paths for all test layers."""

from __future__ import annotations

from pathlib import Path

from raydc.cluster.local_head import free_port

__all__ = ["FIXTURES", "REPO", "free_port"]

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
