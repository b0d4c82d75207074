"""The sync daemon (`cpq2stripe run`): scheduled jobs, events, one active instance, clean shutdown.

`Daemon` and `run_daemon` load on first use: manual runs import `connector.daemon.leader` for the
live-leader check without paying for the scheduler and the event listener (gRPC).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from connector.daemon.app import Daemon, run_daemon

__all__ = ["Daemon", "run_daemon"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from connector.daemon import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
