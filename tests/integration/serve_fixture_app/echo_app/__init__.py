"""A tiny predictor for the Serve integration tests (uploaded as a py_module)."""
