"""Respond fast: acknowledge at once and run handlers on a background queue.

The platform waits 5 seconds for an answer. A receiver given a work queue
answers 202 as soon as the request is verified and de-duplicated, and the
queue runs the handlers afterwards on its own threads (an ``async def``
handler runs in a fresh event loop on one of them). A handler that fails in
the background can no longer ask the sender to retry: the failure is
logged, the event id is released from the idempotency store (so a replay is
handled again), and ``on_error`` is called so the application can keep its
own record.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from types import TracebackType

log = logging.getLogger("transports.receiving")

Job = Callable[[], None]


class ThreadWorkQueue:
    """A bounded queue of jobs run by ``workers`` daemon threads.

    ``submit`` blocks for at most ``put_timeout`` seconds when the queue is
    full, then raises ``queue.Full`` (the receiver answers 503 so the sender
    retries later). ``close`` waits for queued jobs to finish.
    """

    def __init__(
        self, workers: int = 4, *, maxsize: int = 10_000, put_timeout: float = 1.0
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._jobs: queue.Queue[Job | None] = queue.Queue(maxsize)
        self._put_timeout = put_timeout
        self._threads = [
            threading.Thread(target=self._run, name=f"webhooks-receiver-{n}", daemon=True)
            for n in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, job: Job) -> None:
        """Queue ``job``; ``queue.Full`` if no room frees up within ``put_timeout``."""
        self._jobs.put(job, timeout=self._put_timeout)

    def join(self) -> None:
        """Wait until every queued job has run."""
        self._jobs.join()

    def close(self, timeout: float | None = None) -> None:
        """Run what is queued, then stop the threads."""
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join(timeout)

    def __enter__(self) -> ThreadWorkQueue:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                if job is None:
                    return
                job()
            except Exception:
                log.exception("a background webhook job failed")
            finally:
                self._jobs.task_done()
