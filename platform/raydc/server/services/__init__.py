"""Business logic. Services take a session and a principal, raise domain errors, and
never import FastAPI."""
