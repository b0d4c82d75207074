"""Ctrl-C during a long command: the first one asks the run to stop, the second aborts.

The first SIGINT only sets the run's stop event (`SyncContext.stop`). The pipeline checks it before
each record it starts (connector.sync.pipeline.apply_all) and the loops around the batches before
each batch: the Stripe writes in flight finish and are recorded (links, write-back, a cursor only
up to what was done), the run is recorded as `interrupted` with its real counts, and the command
reports what it did and exits 130. A second SIGINT exits 130 at once, as a kill would: the
intents recorded before every create make the next run finish or find what was in flight.

The handler does nothing but set the event (and, the second time, write one line with os.write
and exit): the notice is printed by the progress thread (connector.progress).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C
ABORT_NOTICE = b"\nAborted by a second Ctrl-C; run the same command again to continue.\n"


def interrupted_line(not_processed: int, not_started: list[str]) -> str:
    """The last line of an interrupted command's summary."""
    text = f"Interrupted: {not_processed} records not processed"
    if not_started:
        text += f" ({', '.join(not_started)} not started)"
    return text + "; run the same command again to continue."


@contextmanager
def stop_on_interrupt(stop: threading.Event) -> Iterator[threading.Event]:
    """SIGINT sets `stop` while the block runs (in the main thread only: elsewhere, as in a test
    calling a command's function from a worker thread, signals stay as they were)."""
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handle(_signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            os.write(2, ABORT_NOTICE)
            os._exit(EXIT_INTERRUPTED)
        stop.set()

    previous = signal.signal(signal.SIGINT, handle)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)
