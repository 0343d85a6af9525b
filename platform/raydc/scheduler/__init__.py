"""Scheduling policy: pure functions of a snapshot; no Ray, no database, no server."""
