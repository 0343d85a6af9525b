"""Code that runs inside the Ray cluster as a raydc job's entrypoint."""
