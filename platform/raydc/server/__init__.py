"""The control plane: FastAPI routes over services over the store, plus reconcilers."""
