"""Runs the Salesforce event listener (Pub/Sub API) in a thread while this instance leads.

The listener (connector.salesforce.pubsub.listener.EventListener) only names records; it hands
ids to `handle_ids(sobject, ids)`, which syncs them through the same worker as the poller, and
asks for a catch-up poll of an object through `catch_up(sobject)` when it cannot resume from its
stored replay id (the poll runs before the call returns, so the listener may then forget the id).
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class ListenerRunner:
    def __init__(
        self,
        factory: Callable[..., Any] | None,
        build_args: Callable[[], tuple[tuple[Any, ...], dict[str, Any]]],
    ) -> None:
        self._factory = factory
        self._build_args = build_args
        self._thread: threading.Thread | None = None
        self._stop: threading.Event | None = None
        self.state = "off" if factory is None else "stopped"
        self.listener: Any = None

    def stats(self) -> dict[str, Any]:
        """The listener's own counters (events, reconnects, last event lag), if it keeps any."""
        stats = getattr(self.listener, "stats", None)
        return dict(stats) if isinstance(stats, dict) else {}

    @property
    def available(self) -> bool:
        return self._factory is not None

    def start(self) -> None:
        if self._factory is None or (self._thread is not None and self._thread.is_alive()):
            return
        args, kwargs = self._build_args()
        accepted = _accepted_kwargs(self._factory, kwargs)
        try:
            listener = self._factory(*args, **accepted)
        except Exception as exc:
            self.state = f"not started: {exc}"
            log.error("event listener not started (polling continues): %s", exc)
            return
        stop = threading.Event()
        self._stop = stop
        self.listener = listener

        def run() -> None:
            try:
                listener.run(stop)
            except Exception as exc:
                self.state = f"stopped: {exc}"
                log.error("event listener stopped (polling continues): %s", exc)
            else:
                self.state = "stopped"

        self._thread = threading.Thread(target=run, name="event-listener", daemon=True)
        self.state = "running"
        self._thread.start()
        log.info("event listener started")

    def ensure_running(self) -> None:
        """Start the listener unless it runs, or crashed on its own (that is logged, not retried
        in a loop). A listener we stopped (lost lease) starts again once its thread is gone."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            return
        if thread is None or (self._stop is not None and self._stop.is_set()):
            self._thread = None
            self.start()

    def request_stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    def join(self, timeout: float) -> bool:
        thread = self._thread
        if thread is None:
            return True
        thread.join(max(0.0, timeout))
        if thread.is_alive():
            return False
        self._thread = None
        return True


def _accepted_kwargs(factory: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Pass only the keyword arguments the listener declares (the seam may grow or shrink)."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return kwargs
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in params}
