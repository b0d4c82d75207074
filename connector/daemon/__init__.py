"""The sync daemon (`cpq2stripe run`): scheduled jobs, events, one active instance, clean shutdown."""

from connector.daemon.app import Daemon, run_daemon

__all__ = ["Daemon", "run_daemon"]
