"""A reconciler's thread: one pass now and then, or sooner when woken."""

from __future__ import annotations

import logging
import threading
import time

from raydc.server.lease import Lease

log = logging.getLogger(__name__)


class ReconcileLoop:
    """Runs :meth:`run_once` every :meth:`interval_s`, or at once after :meth:`wake`.

    Wakes that arrive within ``min_gap_s`` of a pass's start (a burst of submits) share
    the next pass. A pass that raises is logged and the loop goes on.
    """

    thread_name = "raydc-reconciler"
    min_gap_s = 0.0

    def __init__(self) -> None:
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lease: Lease | None = None

    def interval_s(self) -> float:
        raise NotImplementedError

    def run_once(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        if self.lease is not None and self.lease.held:
            try:
                self.lease.release()
            except Exception:
                log.exception("could not release the %s lease", self.lease.name)

    def wake(self) -> None:
        """Run a pass now instead of at the next tick."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                if self.lease is None or self.lease.acquire():
                    self.run_once()
            except Exception:
                log.exception("%s pass failed", self.thread_name)
            self._wake.wait(max(0.0, self.interval_s() - (time.monotonic() - started)))
            self._stop.wait(max(0.0, self.min_gap_s - (time.monotonic() - started)))
            self._wake.clear()
