"""The progress display of long commands: which renderer, the rate and ETA text, the cadence of
plain lines (an injected clock), and each record counted once however it is reported."""

from __future__ import annotations

import io
import threading

from connector.progress import (
    STOPPING_NOTICE,
    RunProgress,
    duration_text,
    eta_text,
    plain_line,
    rate_text,
    uses_terminal,
)
from connector.sync.report import Outcome


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TerminalStream(io.StringIO):
    def isatty(self) -> bool:
        return True


def outcome(sf_id: str, object_type: str = "customer") -> Outcome:
    return Outcome(object_type, sf_id, "", "create", "created")


def test_a_terminal_gets_the_rich_bar_and_anything_else_plain_lines(monkeypatch):
    monkeypatch.setenv("TERM", "xterm-256color")
    assert uses_terminal(TerminalStream()) is True
    assert uses_terminal(io.StringIO()) is False
    assert uses_terminal(TerminalStream(), tty=False) is False
    monkeypatch.setenv("TERM", "dumb")
    assert uses_terminal(TerminalStream()) is False
    monkeypatch.setenv("TERM", "xterm-256color")

    terminal, plain = TerminalStream(), io.StringIO()
    for stream in (terminal, plain):
        with RunProgress(stream) as progress, progress.task("Accounts → Customers", 4, "customer") as task:
            task.settle(["a", "b"])
            progress.poll()
    assert "\x1b[" in terminal.getvalue()  # drawn by rich, with colours and cursor moves
    assert "2/4" in terminal.getvalue() and "━" in terminal.getvalue()
    assert "\x1b" not in plain.getvalue()
    assert plain.getvalue().splitlines()[-1].startswith("Accounts → Customers: 2/4 (50%), ")


def test_rate_and_eta_text():
    assert rate_text(50, 2.0) == "25.0 rec/s"
    assert rate_text(0, 0.0) == "0.0 rec/s"
    assert eta_text(50, 150, 2.0) == "ETA 00:04"  # 100 left at 25/s
    assert eta_text(0, 150, 2.0) == "ETA --:--"  # no rate yet
    assert eta_text(150, 150, 2.0) == "ETA 00:00"
    assert eta_text(10, None, 2.0) == ""  # no total: no ETA
    assert eta_text(1, 3601, 1.0) == "ETA 1:00:00"
    assert duration_text(3725) == "1:02:05"
    assert duration_text(65) == "01:05"
    assert plain_line("Orders", 1234, 1702, 48.0) == (
        "Orders: 1,234/1,702 (73%), 25.7 rec/s, elapsed 00:48, ETA 00:18"
    )
    assert plain_line("Orders", 1234, None, 48.0) == "Orders: 1,234 records, 25.7 rec/s, elapsed 00:48"
    assert plain_line("Orders", 10, 10, 2.0, end="done").endswith("elapsed 00:02, done")


def test_plain_lines_come_every_interval_and_once_at_the_end():
    clock, out = Clock(), io.StringIO()
    progress = RunProgress(out, tty=False, line_interval=30, clock=clock)
    with progress.task("Accounts → Customers", 100, "customer") as task:
        for _second in range(1, 71):  # the refresher polls often; lines come every 30 s only
            clock.now += 1
            task.advance(1)
            progress.poll()
        clock.now += 1
    lines = out.getvalue().splitlines()
    assert lines == [
        "Accounts → Customers: 30/100 (30%), 1.0 rec/s, elapsed 00:30, ETA 01:10",
        "Accounts → Customers: 60/100 (60%), 1.0 rec/s, elapsed 01:00, ETA 00:40",
        "Accounts → Customers: 70/100 (70%), 1.0 rec/s, elapsed 01:11, done",
    ]


def test_each_record_counts_once_when_ticked_by_a_worker_and_settled_with_its_batch():
    progress = RunProgress(io.StringIO(), tty=False)
    with progress.task("Orders → Subscriptions", None, "subscription") as task:
        progress.tick(outcome("801A", "subscription"))
        progress.tick(outcome("001A", "customer"))  # an Order batch's Account: not an Order
        assert task.count == 1  # before the batch ends
        progress.settle([outcome("801A", "subscription"), outcome("801B", "subscription")])
        progress.settle([outcome("001A", "customer")])
        assert task.count == 2
        progress.settle([], already_applied=3)  # rows a poll had applied before
        assert task.count == 5
    progress.tick(outcome("801C", "subscription"))  # after the pass: counted nowhere
    assert task.count == 5


def test_a_stop_request_is_announced_once_and_the_pass_ends_stopped():
    stop = threading.Event()
    out = io.StringIO()
    progress = RunProgress(out, tty=False, stop=stop)
    with progress.task("Accounts → Customers", 10, "customer") as task:
        task.advance(4)
        stop.set()
        progress.poll()
        progress.poll()
    text = out.getvalue()
    assert text.count(STOPPING_NOTICE) == 1
    assert text.splitlines()[-1].startswith("Accounts → Customers: 4/10 (40%)")
    assert text.splitlines()[-1].endswith(", stopped")
