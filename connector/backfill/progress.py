"""Progress for long runs: a one-line bar with rate and ETA on a terminal, plain lines otherwise.

Hand-written (no dependency). `Progress.advance(n)` counts finished records; `peek` is an optional
callable giving records in flight (e.g. Stripe writes done in the current batch) so the bar moves
between batches. A daemon thread redraws the bar every `interval` seconds on a terminal, or prints
a plain line every `line_interval` seconds when the output is a file or a pipe (logs, CI).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    def __init__(
        self,
        title: str,
        total: int | None,
        *,
        stream: TextIO | None = None,
        tty: bool | None = None,
        interval: float = 0.5,
        line_interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.title = title
        self.total = total
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.interval = interval if self.tty else line_interval
        self.done = 0
        self.peek: Callable[[], int] | None = None
        self._clock = clock
        self._started = clock()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- counting ---------------------------------------------------------------------------
    def advance(self, n: int) -> None:
        with self._lock:
            self.done += n

    def current(self) -> int:
        extra = 0
        if self.peek is not None:
            try:
                extra = max(0, self.peek())
            except Exception:
                extra = 0
        value = self.done + extra
        return min(value, self.total) if self.total is not None else value

    # ---- rendering ----------------------------------------------------------------------------
    def line(self, width: int = 30) -> str:
        done = self.current()
        elapsed = self._clock() - self._started
        rate = done / elapsed if elapsed > 0 else 0.0
        if self.total:
            frac = min(1.0, done / self.total)
            filled = int(frac * width)
            bar = "#" * filled + "-" * (width - filled)
            eta = _duration((self.total - done) / rate) if rate > 0 else "--:--"
            return (
                f"{self.title} [{bar}] {done}/{self.total} {frac:6.1%} "
                f"{rate:6.1f} rec/s  elapsed {_duration(elapsed)}  ETA {eta}"
            )
        return f"{self.title} {done} records {rate:6.1f} rec/s  elapsed {_duration(elapsed)}"

    def render(self, final: bool = False) -> None:
        text = self.line()
        if self.tty:
            self.stream.write("\r\x1b[2K" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.render()

    def start(self) -> Progress:
        self._started = self._clock()
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self.peek = None
        self.render(final=True)

    def __enter__(self) -> Progress:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.close()
