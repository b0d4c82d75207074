"""Ctrl-C as a stop request: the first SIGINT sets the stop event (no KeyboardInterrupt), the
second exits 130 at once; the previous handler is back afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

from connector.interrupt import ABORT_NOTICE, interrupted_line, stop_on_interrupt
from tests.e2e.conftest import REPO


def test_the_first_sigint_only_asks_the_run_to_stop():
    before = signal.getsignal(signal.SIGINT)
    stop = threading.Event()
    with stop_on_interrupt(stop):
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 5
        while not stop.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)  # the handler runs in the main thread between bytecodes
        assert stop.is_set()
    assert signal.getsignal(signal.SIGINT) is before


def test_the_second_sigint_aborts_with_130():
    script = textwrap.dedent(
        """
        import os, signal, threading, time
        from connector.interrupt import stop_on_interrupt
        stop = threading.Event()
        with stop_on_interrupt(stop):
            os.kill(os.getpid(), signal.SIGINT)
            while not stop.is_set():
                time.sleep(0.01)
            print("asked to stop", flush=True)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(10)
        print("not reached")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 130
    assert done.stdout == "asked to stop\n"
    assert ABORT_NOTICE.decode().strip() in done.stderr


def test_the_interrupted_line_names_what_is_left():
    assert interrupted_line(115, ["Orders → Subscriptions"]) == (
        "Interrupted: 115 records not processed (Orders → Subscriptions not started); "
        "run the same command again to continue."
    )
    assert interrupted_line(0, []) == (
        "Interrupted: 0 records not processed; run the same command again to continue."
    )
