"""The event listener seam: started with the daemon's callbacks, stopped through its event."""

from __future__ import annotations

import threading
from typing import ClassVar

from connector.daemon.listener import ListenerRunner


class FakeListener:
    instances: ClassVar[list[FakeListener]] = []

    def __init__(self, settings, store, handle_ids, *, topics=None, on_catch_up=None) -> None:
        self.args = (settings, store)
        self.handle_ids = handle_ids
        self.on_catch_up = on_catch_up
        self.running = threading.Event()
        FakeListener.instances.append(self)

    def run(self, stop: threading.Event) -> None:
        self.running.set()
        self.handle_ids("Account", ["001A"])
        stop.wait(30)


def test_runner_passes_callbacks_and_stops_the_listener():
    FakeListener.instances = []
    handled = []
    caught = []
    runner = ListenerRunner(
        FakeListener,
        lambda: (
            ("settings", "store", lambda s, ids: handled.append((s, ids))),
            {"on_catch_up": caught.append},
        ),
    )
    runner.start()
    [listener] = FakeListener.instances
    assert listener.running.wait(30)
    assert handled == [("Account", ["001A"])]
    listener.on_catch_up("/data/AccountChangeEvent")
    assert caught == ["/data/AccountChangeEvent"]
    assert runner.state == "running"
    runner.start()  # already running: no second listener
    assert len(FakeListener.instances) == 1
    runner.request_stop()
    assert runner.join(30)
    assert runner.state == "stopped"


def test_unknown_keyword_arguments_are_not_passed():
    seen = {}

    class Minimal:
        def __init__(self, settings, store, handle_ids) -> None:
            seen["ok"] = True

        def run(self, stop):
            return None

    runner = ListenerRunner(Minimal, lambda: (("s", "st", print), {"on_catch_up": print}))
    runner.start()
    assert runner.join(30)
    assert seen == {"ok": True}


def test_a_listener_that_cannot_start_or_crashes_leaves_polling_running():
    class Broken:
        def __init__(self, *a, **k) -> None:
            raise ValueError("no topics configured")

    runner = ListenerRunner(Broken, lambda: ((), {}))
    runner.start()
    assert runner.state.startswith("not started: no topics configured")

    class Crashing:
        def __init__(self, *a, **k) -> None:
            pass

        def run(self, stop):
            raise RuntimeError("stream closed")

    runner = ListenerRunner(Crashing, lambda: ((), {}))
    runner.start()
    assert runner.join(30)
    assert runner.state == "stopped: stream closed"


def test_no_listener_available_means_off():
    runner = ListenerRunner(None, lambda: ((), {}))
    runner.start()
    assert not runner.available and runner.state == "off"
    assert runner.join(1)


def test_a_listener_stopped_for_a_lost_lease_starts_again_when_leading_again():
    FakeListener.instances = []
    runner = ListenerRunner(FakeListener, lambda: (("s", "st", lambda *_: None), {}))
    runner.ensure_running()
    assert FakeListener.instances[0].running.wait(30)
    runner.request_stop()  # lease lost
    assert runner.join(30)
    runner.ensure_running()  # leading again
    assert len(FakeListener.instances) == 2
    assert FakeListener.instances[1].running.wait(30)
    runner.request_stop()
    assert runner.join(30)
