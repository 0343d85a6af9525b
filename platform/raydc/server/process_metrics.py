"""What this control plane process observed since it started: Prometheus histograms.

They live in a registry of their own per control plane, never in prometheus_client's
global one: tests build many apps in one process, and each must count only its own.
Gauges read from the database are collected at scrape time instead (server/metrics.py).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram

# Queue waits run from seconds on an idle cluster to a day behind a busy one.
ADMISSION_WAIT_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400)
PASS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """The control plane's histograms. Implements services.scheduling.SchedulingObserver
    and http_metrics.RequestObserver."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.admission_wait = Histogram(
            "raydc_admission_wait_seconds",
            "Seconds from when a job last became PENDING (its submission, or its requeue "
            "after a preemption) to its admission by the scheduler",
            ["priority"],
            buckets=ADMISSION_WAIT_BUCKETS,
            registry=self.registry,
        )
        self.scheduling_pass = Histogram(
            "raydc_scheduling_pass_seconds",
            "Seconds one scheduling pass took to read the queue, decide and record its "
            "decisions (the commit that follows is not counted)",
            buckets=PASS_BUCKETS,
            registry=self.registry,
        )
        self.http_request = Histogram(
            "raydc_http_request_duration_seconds",
            "Seconds from a request's arrival to the end of its response body (a followed "
            "log stream counts until it ends), by method, route template and status code",
            ["method", "route", "status"],
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )

    def pass_finished(self, seconds: float) -> None:
        self.scheduling_pass.observe(seconds)

    def job_admitted(self, priority: str, waited_s: float) -> None:
        self.admission_wait.labels(priority=priority).observe(max(0.0, waited_s))

    def request_finished(self, method: str, route: str, status: int, seconds: float) -> None:
        self.http_request.labels(method=method, route=route, status=str(status)).observe(seconds)
