"""Tokens, roles and access rules."""
