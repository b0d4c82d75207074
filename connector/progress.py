"""Progress of a long command (`sync`, `backfill`, `reconcile`, `retry --all`), on stderr so the
summary on stdout stays clean for scripts.

On a terminal: a rich bar per pass with the count, rate, elapsed time and ETA when the total is
known (a query's `totalSize`), a spinner with the count and rate when it is not. Anywhere else
(a pipe, a file, CI): a plain line every `line_interval` seconds and one when each pass ends, no
ANSI codes.

Records are counted as they finish, not when their batch does: the pipeline's Stripe workers
`tick` each record (connector.sync.pipeline.apply_all), and the loop around the batches `settle`s
the batch's records when it ends (the ones no worker applied: unchanged, dry run, refused before
any write). A record ticked and then settled counts once.

A stop request (the first Ctrl-C, connector.interrupt) is announced here too, from this module's
own thread: a signal handler must not write to a stream another thread may be writing to.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    ProgressColumn,
    SpinnerColumn,
    TaskID,
    TextColumn,
)
from rich.progress import Progress as RichProgress
from rich.progress import Task as RichTask
from rich.text import Text

Clock = Callable[[], float]
LINE_INTERVAL = 30.0  # seconds between plain lines when stderr is not a terminal
REFRESH = 0.25  # seconds between redraws of the bar (and checks for a stop request)
STOPPING_NOTICE = "Stopping after the records in flight are saved (Ctrl-C again to abort at once)…"


class _Finished(Protocol):
    """What `settle` needs of an outcome (connector.sync.report.Outcome)."""

    @property
    def object_type(self) -> str: ...

    @property
    def sf_id(self) -> str: ...


# ---- the text, pure -------------------------------------------------------------------------------


def duration_text(seconds: float) -> str:
    """`01:05`, or `1:00:05` from an hour up."""
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def rate_text(count: int, elapsed: float) -> str:
    rate = count / elapsed if elapsed > 0 else 0.0
    return f"{rate:.1f} rec/s"


def eta_text(count: int, total: int | None, elapsed: float) -> str:
    """`ETA 00:18`; `ETA --:--` before the first record (no rate yet); empty without a total."""
    if total is None:
        return ""
    left = max(0, total - count)
    if left == 0:
        return "ETA 00:00"
    if count <= 0 or elapsed <= 0:
        return "ETA --:--"
    return f"ETA {duration_text(left / (count / elapsed))}"


def count_text(count: int, total: int | None) -> str:
    return f"{count:,}/{total:,}" if total is not None else f"{count:,} records"


def plain_line(title: str, count: int, total: int | None, elapsed: float, *, end: str = "") -> str:
    """One line for a log: `Accounts → Customers: 1,234/1,702 (72%), 25.3 rec/s, elapsed 00:48,
    ETA 00:18`; at the end of the pass `end` ("done", "stopped") instead of the ETA."""
    parts = [count_text(count, total) + (f" ({count / total:.0%})" if total else "")]
    parts.append(rate_text(count, elapsed))
    parts.append(f"elapsed {duration_text(elapsed)}")
    if end:
        parts.append(end)
    elif total is not None:
        parts.append(eta_text(count, total, elapsed))
    return f"{title}: " + ", ".join(parts)


def uses_terminal(stream: TextIO, tty: bool | None = None) -> bool:
    """The rich bar only on a terminal that can draw it: a pipe, a file, CI or `TERM=dumb` (an
    editor's shell) gets plain lines."""
    if tty is not None:
        return tty
    if os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


# ---- one pass -------------------------------------------------------------------------------------


@dataclass
class Task:
    """One pass over one kind of record: finished records counted once each."""

    title: str
    total: int | None
    object_type: str  # the records it counts (an Order batch's Accounts are not Orders)
    started: float
    settled: int = 0
    ended: float | None = None
    display_id: TaskID | None = None  # its row in the rich display, on a terminal
    _ticked: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def count(self) -> int:
        with self._lock:
            done = self.settled + len(self._ticked)
        return min(done, self.total) if self.total is not None else done

    def tick(self, sf_id: str) -> None:
        """A record a worker has just finished (its batch has not ended yet)."""
        with self._lock:
            self._ticked.add(sf_id)

    def settle(self, ids: Iterable[str]) -> None:
        """Records whose batch has ended; those ticked before are not counted again."""
        with self._lock:
            for sf_id in ids:
                self._ticked.discard(sf_id)
                self.settled += 1

    def advance(self, n: int) -> None:
        """Records done without an outcome of their own (rows a poll had already applied)."""
        with self._lock:
            self.settled += n

    def set_total(self, total: int | None) -> None:
        """The total once known (a query's first page has been read)."""
        self.total = total

    def elapsed(self, now: float) -> float:
        return (self.ended if self.ended is not None else now) - self.started


# ---- the display ----------------------------------------------------------------------------------


class _BarOrSpinner(ProgressColumn):
    """A bar when the total is known, a spinner when it is not."""

    def __init__(self) -> None:
        super().__init__()
        self._bar = BarColumn(bar_width=24)
        self._spinner = SpinnerColumn()

    def render(self, task: RichTask) -> Any:
        return self._bar.render(task) if task.total is not None else self._spinner.render(task)


class _Field(ProgressColumn):
    """One of the pass's own figures (count, rate, ETA: the same text as the plain lines)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def render(self, task: RichTask) -> Text:
        return Text(str(task.fields.get(self.name, "")))


class RunProgress:
    """The progress of one command: its passes (`task`), the display, the stop notice."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        tty: bool | None = None,
        line_interval: float = LINE_INTERVAL,
        refresh: float = REFRESH,
        clock: Clock = time.monotonic,
        stop: threading.Event | None = None,
    ) -> None:
        self.stream = stream or sys.stderr
        self.tty = uses_terminal(self.stream, tty)
        self.line_interval = line_interval
        self.refresh = refresh
        self.clock = clock
        self.stop = stop
        self.active: Task | None = None
        self._rich: RichProgress | None = None
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_line = clock()
        self._noticed = False
        self._handlers: list[tuple[logging.StreamHandler[Any], Any]] = []

    # ---- passes ------------------------------------------------------------------------------
    @contextmanager
    def task(self, title: str, total: int | None = None, object_type: str = "") -> Iterator[Task]:
        task = Task(title, total, object_type, self.clock())
        with self._lock:
            self.active = task
            self._last_line = task.started
            if self._rich is not None:
                task.display_id = self._rich.add_task(
                    title, total=total, count="", rate="", elapsed="", eta=""
                )
        try:
            yield task
        finally:
            task.ended = self.clock()
            with self._lock:
                if self.active is task:
                    self.active = None
                self._draw(task, final=True)

    def tick(self, outcome: _Finished) -> None:
        """A record finished by a Stripe worker; counted by the pass of its own kind only."""
        task = self.active
        if task is not None and outcome.object_type == task.object_type:
            task.tick(outcome.sf_id)

    def settle(self, outcomes: Iterable[_Finished], already_applied: int = 0) -> None:
        """A batch has ended: its records of the pass's kind, and `already_applied` rows it
        skipped (a poll's overlap with the last run)."""
        task = self.active
        if task is not None:
            task.settle(o.sf_id for o in outcomes if o.object_type == task.object_type)
            task.advance(already_applied)

    def message(self, text: str) -> None:
        """A line among the progress output (above the bar on a terminal)."""
        with self._lock:
            if self._rich is not None:
                self._rich.console.print(text, markup=False, highlight=False)
            else:
                self.stream.write(text + "\n")
                self.stream.flush()

    # ---- drawing -------------------------------------------------------------------------------
    def _draw(self, task: Task, *, final: bool = False) -> None:
        """Called with the lock held."""
        now = self.clock()
        count, elapsed = task.count, task.elapsed(now)
        if self._rich is not None:
            if task.display_id is not None:
                self._rich.update(
                    task.display_id,
                    total=task.total,
                    completed=count,
                    count=count_text(count, task.total),
                    rate=rate_text(count, elapsed),
                    elapsed=duration_text(elapsed),
                    eta="" if final else eta_text(count, task.total, elapsed),
                )
                if final:
                    self._rich.stop_task(task.display_id)
            return
        if final or now - self._last_line >= self.line_interval:
            end = ("stopped" if self.stop is not None and self.stop.is_set() else "done") if final else ""
            self.stream.write(plain_line(task.title, count, task.total, elapsed, end=end) + "\n")
            self.stream.flush()
            self._last_line = now

    def poll(self) -> None:
        """One refresh: redraw the bar or print a due line, and announce a stop request once."""
        if self.stop is not None and self.stop.is_set() and not self._noticed:
            self._noticed = True
            self.message(STOPPING_NOTICE)
        with self._lock:
            if self.active is not None:
                self._draw(self.active)
            if self._rich is not None:
                self._rich.refresh()

    def _run(self) -> None:
        while not self._halt.wait(self.refresh):
            self.poll()

    def __enter__(self) -> RunProgress:
        if self.tty:
            console = Console(file=self.stream, force_terminal=True, stderr=self.stream is sys.stderr)
            self._rich = RichProgress(
                TextColumn("{task.description}"),
                _BarOrSpinner(),
                _Field("count"),
                _Field("rate"),
                _Field("elapsed"),
                _Field("eta"),
                console=console,
                auto_refresh=False,
                redirect_stdout=False,
            )
            self._rich.start()
            self._route_logs()
        self._halt.clear()
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._halt.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._rich is not None:
            self._rich.refresh()
            self._rich.stop()
            self._rich = None
        for handler, stream in self._handlers:
            handler.setStream(stream)
        self._handlers.clear()

    def _route_logs(self) -> None:
        """Log lines to the same terminal go above the bar instead of through it."""
        proxy = sys.stderr  # rich's Live redirects sys.stderr through its console while it runs
        if proxy is self.stream:
            return
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is self.stream:
                self._handlers.append((handler, handler.setStream(proxy)))
