"""The only code that talks to Ray: Jobs API, cluster state, the local dev head."""
