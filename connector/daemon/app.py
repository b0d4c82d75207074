"""`cpq2stripe run`: the long-running daemon.

Threads: the main thread holds the leader lease and beats the heartbeat (and handles signals);
an APScheduler BackgroundScheduler fires the jobs (poll, retry, reconcile, merges, mapping check);
the event listener runs in its own thread while this instance leads. All sync work goes through
one SyncWorker lock. Shutdown: stop scheduling, let the batch in flight finish (bounded by
`shutdown_timeout_seconds`), remove the heartbeat, release the lease, exit 0.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from connector.mapping import MappingError, load_mappings
from connector.salesforce.pubsub.listener import EventListener
from connector.settings import Settings

from .jobs import JOBS
from .leader import AlreadyRunning, Leadership, claim_single_instance, new_instance_id
from .listener import ListenerRunner
from .metrics import Metrics, MetricsServer, Sample
from .reload import MappingWatcher
from .worker import SyncWorker

log = logging.getLogger(__name__)

EXIT_OK, EXIT_CONFIG, EXIT_FATAL = 0, 2, 3
MAPPING_CHECK_SECONDS = 2
Echo = Callable[[str], None]


class Daemon:
    def __init__(
        self,
        settings: Settings,
        *,
        out: Echo,
        metrics_port: int | None = None,
        listener_factory: Callable[..., Any] | str | None = "default",
        instance_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.out = out
        self.metrics_port = metrics_port if metrics_port is not None else settings.metrics_port
        self.listener_factory: Callable[..., Any] | None = (
            EventListener
            if listener_factory == "default"
            else cast("Callable[..., Any] | None", listener_factory)
        )
        self.instance_id = instance_id or new_instance_id()
        self.stop = threading.Event()
        self.metrics = Metrics()
        self.scheduler: BackgroundScheduler | None = None
        self.listener: ListenerRunner | None = None
        self.metrics_server: MetricsServer | None = None

    # ---- entry ---------------------------------------------------------------------------------

    def run(self) -> int:
        try:
            mappings = load_mappings(self.settings.mappings_dir)
        except MappingError as exc:
            self.out(f"Refusing to start: the mappings in {self.settings.mappings_dir} are invalid:\n{exc}")
            return EXIT_CONFIG
        from connector.sync.runner import open_context

        with open_context(self.settings, mappings) as ctx:
            store = ctx.store
            leadership = Leadership(store, self.instance_id, self.settings.leader_lease_ttl_seconds)
            self.sqlite = store.engine.dialect.name == "sqlite"
            if self.sqlite:
                try:
                    claim_single_instance(leadership)
                except AlreadyRunning as exc:
                    self.out(str(exc))
                    return EXIT_CONFIG
            try:
                if self.metrics_port is not None:
                    try:
                        server = MetricsServer(self.metrics, self.settings.metrics_host, self.metrics_port)
                    except OSError as exc:
                        self.out(
                            f"Cannot serve metrics on {self.settings.metrics_host}:{self.metrics_port}: {exc}"
                        )
                        return EXIT_CONFIG
                    self.metrics_server = server
                    log.info("metrics on http://%s:%d/metrics", server.host, server.port)
                return self._serve(ctx, leadership, mappings)
            finally:
                if self.metrics_server is not None:
                    self.metrics_server.stop()
                try:
                    store.instances.remove_heartbeat(self.instance_id)
                except Exception as exc:
                    log.warning("could not remove the heartbeat: %s", exc)
                leadership.release()

    # ---- wiring --------------------------------------------------------------------------------

    def _serve(self, ctx: Any, leadership: Leadership, mappings: Any) -> int:
        settings = self.settings
        watcher = MappingWatcher(settings.mappings_dir, mappings)
        worker = SyncWorker(
            ctx,
            self.metrics,
            may_work=lambda: leadership.is_leader() and not self.stop.is_set(),
            mappings=lambda: watcher.current,
        )
        self.worker, self.watcher, self.leadership = worker, watcher, leadership

        def reload_mappings() -> None:
            result = watcher.check()
            if result is not None:
                self.metrics.inc("cpq2stripe_mapping_reloads_total", {"result": "ok" if result else "failed"})

        scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(8)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        scheduler.add_job(worker.poll, "interval", seconds=settings.poll_interval_seconds, id="poll")
        scheduler.add_job(worker.retry_due, "interval", seconds=settings.retry_interval_seconds, id="retry")
        for job, seconds in (
            ("reconcile", settings.reconcile_interval_seconds),
            ("merges", settings.merge_interval_seconds),
            ("billing-status", settings.billing_status_interval_seconds),
        ):
            scheduler.add_job(worker.run_job, "interval", args=(job, JOBS[job]), seconds=seconds, id=job)
        scheduler.add_job(reload_mappings, "interval", seconds=MAPPING_CHECK_SECONDS, id="mappings")
        self.scheduler = scheduler

        factory = self.listener_factory
        if factory is not None and not str(getattr(settings, "salesforce_pubsub_topics", "x")).strip():
            log.info("event listener off (CPQ2STRIPE_SALESFORCE_PUBSUB_TOPICS is empty): polling only")
            factory = None
        listener = ListenerRunner(factory, lambda: self._listener_args(ctx))
        self.listener = listener
        self.metrics.sources.append(self._listener_samples)
        self._install_signals()
        scheduler.start()
        log.info(
            "daemon %s started (poll every %d s, %s state store)",
            self.instance_id,
            settings.poll_interval_seconds,
            "SQLite" if self.sqlite else "PostgreSQL",
        )
        try:
            self._lead_loop(ctx, leadership, listener)
        finally:
            clean = self._shutdown(worker, listener, scheduler)
        if not clean:
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            # The batch in flight is still running; state is crash-safe (intents before creates).
            try:
                ctx.store.instances.remove_heartbeat(self.instance_id)
            finally:
                leadership.release()
                os._exit(EXIT_OK)
        log.info("daemon %s stopped", self.instance_id)
        return EXIT_OK

    def _listener_args(self, ctx: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        def handle_ids(sobject: str, ids: list[str]) -> None:
            self.worker.sync_ids(sobject, list(ids), received_at=time.time())

        return (self.settings, ctx.store.cursors, handle_ids), {"catch_up": self.catch_up}

    def catch_up(self, sobject: str) -> None:
        """Poll `sobject` from its cursor now and return when done (the listener asks after an
        expired replay id or an overflow gap, and forgets its old replay id only afterwards)."""
        log.info("catch-up poll of %s requested by the event listener", sobject)
        objects = (sobject,) if sobject in ("Account", "Order") else ("Account", "Order")
        self.worker.poll(objects, required=True)

    def _listener_samples(self) -> list[Sample]:
        stats = self.listener.stats() if self.listener is not None else {}
        out: list[Sample] = []
        lag = stats.get("last_event_lag_seconds")
        if isinstance(lag, int | float):
            out.append(("cpq2stripe_event_lag_seconds", (), float(lag)))
        for kind in ("events", "skipped_own", "ids_handled", "reconnects", "catch_ups", "errors"):
            value = stats.get(kind)
            if isinstance(value, int | float):
                out.append(("cpq2stripe_listener_events_total", (("kind", kind),), float(value)))
        return out

    def _run_now(self, job_id: str) -> None:
        scheduler = self.scheduler
        if scheduler is None:
            return
        job = scheduler.get_job(job_id)
        if job is not None:
            job.modify(next_run_time=datetime.now(UTC))

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def on_signal(signum: int, _frame: Any) -> None:
            if self.stop.is_set():
                log.warning("second %s: still finishing the batch in flight", signal.Signals(signum).name)
                return
            log.info("%s received: stopping after the batch in flight", signal.Signals(signum).name)
            self.stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    # ---- leadership and heartbeat ------------------------------------------------------------------

    def _lead_loop(self, ctx: Any, leadership: Leadership, listener: ListenerRunner) -> None:
        interval = min(self.settings.heartbeat_interval_seconds, leadership.renew_interval)
        leading = False
        standby_logged = False
        while not self.stop.is_set():
            held = leadership.tick()
            if held and not leading:
                leading = True
                log.info("leader: this instance (%s) now works", self.instance_id)
                self.metrics.set("cpq2stripe_leader", 1)
                self._run_now("poll")
                self._run_now("retry")
                self._run_now("merges")
            elif not held and leading:
                leading = False
                log.warning("standby: lost the leader lease; stopped working")
                self.metrics.set("cpq2stripe_leader", 0)
                listener.request_stop()
            elif not held and not standby_logged:
                holder = _safe(lambda: ctx.store.instances.lease_holder("daemon"))
                log.info(
                    "standby: %s holds the leader lease; waiting", holder[0] if holder else "another instance"
                )
                standby_logged = True
            if held:
                standby_logged = False
                listener.ensure_running()
            self._beat(ctx, "leader" if held else "standby", listener)
            self.stop.wait(interval)

    def _beat(self, ctx: Any, role: str, listener: ListenerRunner) -> None:
        info = {
            **self.metrics.snapshot(),
            "mapping_version": self.watcher.version,
            "mapping_error": self.watcher.last_error,
            "listener": listener.state,
            "listener_connected": listener.stats().get("connected"),
            "metrics_port": self.metrics_server.port if self.metrics_server else None,
        }
        try:
            ctx.store.instances.heartbeat(self.instance_id, role, *_host_pid(), info)
            if role == "leader":
                self._prune_heartbeats(ctx)
        except Exception as exc:
            log.warning("heartbeat failed: %s", exc)

    def _prune_heartbeats(self, ctx: Any) -> None:
        """Forget instances that stopped beating long ago (killed -9): `status` lists the living."""
        horizon = datetime.now(UTC) - timedelta(
            seconds=max(
                60.0, 4 * self.settings.leader_lease_ttl_seconds, 4 * self.settings.heartbeat_interval_seconds
            )
        )
        for beat in ctx.store.instances.list_heartbeats():
            if beat.instance_id != self.instance_id and beat.beat_at < horizon:
                ctx.store.instances.remove_heartbeat(beat.instance_id)

    # ---- shutdown ----------------------------------------------------------------------------------

    def _shutdown(self, worker: SyncWorker, listener: ListenerRunner, scheduler: BackgroundScheduler) -> bool:
        """True when everything stopped in time; False when the batch in flight is still running."""
        deadline = time.monotonic() + self.settings.shutdown_timeout_seconds
        self.stop.set()
        worker.stopping.set()
        listener.request_stop()
        try:
            scheduler.shutdown(wait=False)
        except Exception as exc:  # not running
            log.debug("scheduler shutdown: %s", exc)
        log.info(
            "stopping: waiting up to %.0f s for the batch in flight", self.settings.shutdown_timeout_seconds
        )
        finished = worker.idle(deadline - time.monotonic())
        listener_done = listener.join(deadline - time.monotonic())
        if not finished:
            log.error(
                "the batch in flight did not finish within %.0f s; exiting anyway (every Stripe create "
                "has a recorded intent, so the next run completes it without duplicates)",
                self.settings.shutdown_timeout_seconds,
            )
        elif not listener_done:
            log.warning(
                "the event listener did not stop in time; its replay id is saved up to the last batch"
            )
        return finished


def _host_pid() -> tuple[str, int]:
    import socket

    return socket.gethostname(), os.getpid()


def _safe(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception:
        return None


def run_daemon(settings: Settings, *, out: Echo, metrics_port: int | None = None) -> int:
    """0 stopped cleanly, 2 configuration problem, 3 a fatal error (e.g. the state store is down)."""
    from connector.errors import classify

    try:
        return Daemon(settings, out=out, metrics_port=metrics_port).run()
    except Exception as exc:
        out(f"Daemon stopped: {classify(exc).message}")
        return EXIT_FATAL
