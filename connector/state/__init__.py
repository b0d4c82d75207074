"""State store: links Salesforce record -> Stripe object, poll cursors, failures, runs, sync log."""

from connector.state.cursor import Cursor, advance, filter_new, poll_window
from connector.state.failures import backoff
from connector.state.links import LinkConflict, LinkNotFound
from connector.state.migrations import LATEST_VERSION, SchemaTooNew
from connector.state.models import Failure, Heartbeat, Link, LinkUpdate, LogEntry, Run
from connector.state.store import StateStore

__all__ = [
    "LATEST_VERSION",
    "Cursor",
    "Failure",
    "Heartbeat",
    "Link",
    "LinkConflict",
    "LinkNotFound",
    "LinkUpdate",
    "LogEntry",
    "Run",
    "SchemaTooNew",
    "StateStore",
    "advance",
    "backoff",
    "filter_new",
    "poll_window",
]
