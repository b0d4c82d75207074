"""The event listener: Salesforce events in, record ids out to the sync pipeline.

One worker thread per topic keeps a Subscribe stream open. Events carry ids only; `handle_ids`
(the caller) fetches the records in batches and syncs them like the poller does. The guarantees:

* **Coalesced.** Topic threads only read and decode: each FetchResponse becomes a delivery (ids
  per object, gaps, its last replay id) on a bounded queue, and the thread goes on reading. One
  handler thread takes every delivery queued meanwhile, across topics and objects, de-duplicates
  the ids and calls `handle_ids` once per object: a burst is applied as a few large batches, side
  by side on the Stripe workers, instead of a string of small serial ones. A full queue blocks the
  topic threads, so the server holds the rest (flow control).
* **At least once, resumable.** A topic's replay id is stored (`ReplayStore.set_replay_id`: the
  state store's cursors) only after `handle_ids` returned for every event up to it; a restart
  resumes after it (CUSTOM). A failing `handle_ids` is retried in place with backoff; nothing is
  stored until it succeeds (a stop in between stores nothing, so a restart gets the events again;
  deliveries still queued at a stop are dropped unstored, so they come again too).
* **Never EARLIEST.** A stored replay id Salesforce refuses (past the 72 h retention, invalid)
  makes the listener subscribe from LATEST, call `catch_up(sobject)` (the caller polls from its
  cursor), and only then forget the old id — a crash in between just repeats the catch-up.
* **Flow control.** `batch_size` events are requested; once all arrived, the next batch is asked
  for at once (while the handler still applies the last ones), so the server always has a pending
  request and never closes the stream as idle.
* **Resilience.** UNAUTHENTICATED re-authenticates and reconnects; other failures reconnect with
  exponential backoff; a watchdog cancels a stream that said nothing (not even a keepalive) for
  `stall_timeout` seconds, and it is reopened from the stored replay id.
* **No loops.** Changes made by the connector itself (commitUser = the integration user, or
  changeOrigin carrying `client=cpq2stripe` from our Sforce-Call-Options) are skipped; their
  replay ids are still stored.

`handle_ids` and `catch_up` calls are serialised, so the caller need not be thread-safe.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import grpc

from connector.salesforce.auth import Token
from connector.salesforce.pubsub import pubsub_api_pb2 as pb
from connector.salesforce.pubsub.client import (
    MAX_NUM_REQUESTED,
    PubSubClient,
    decode_replay_id,
    encode_replay_id,
    is_auth_error,
    is_replay_id_error,
)
from connector.settings import Settings

log = logging.getLogger(__name__)

OWN_CLIENT_ID = "cpq2stripe"  # what the connector sends in Sforce-Call-Options (client=...)
DEFAULT_STALL_TIMEOUT = 330.0  # Salesforce sends a keepalive at least every 270 s
QUEUE_DEPTH = 50  # deliveries (FetchResponses, up to 100 events each) read ahead of the handler
MAX_BATCH_IDS = 2000  # ids one handler batch gathers before it applies them


class ReplayStore(Protocol):
    def replay_id(self, topic: str) -> str | None: ...
    def set_replay_id(self, topic: str, replay_id: str | None) -> None: ...


@dataclass(frozen=True)
class TopicSpec:
    """A channel and the object its events name. Change events carry the object and ids in
    their header; a platform event names one record in `id_field`."""

    name: str
    sobject: str
    id_field: str | None = None  # platform events only

    @property
    def is_change_event(self) -> bool:
        return self.id_field is None


def change_event_object(channel: str) -> str | None:
    """/data/AccountChangeEvent -> Account; /data/Invoice__ChangeEvent -> Invoice__c."""
    if not channel.startswith("/data/") or not channel.endswith("ChangeEvent"):
        return None
    base = channel[len("/data/") : -len("ChangeEvent")]
    if not base:
        return None
    return base + "c" if base.endswith("__") else base


def parse_topics(text: str | Sequence[str], id_field: str) -> list[TopicSpec]:
    """`/data/AccountChangeEvent,/event/Order_Activated__e=Order` -> specs (raises ValueError)."""
    items = text.split(",") if isinstance(text, str) else list(text)
    specs = []
    for raw in items:
        item = raw.strip()
        if not item:
            continue
        name, _, sobject = item.partition("=")
        name, sobject = name.strip(), sobject.strip()
        cdc_object = change_event_object(name)
        if cdc_object is not None:
            specs.append(TopicSpec(name, sobject or cdc_object))
        elif name.startswith("/event/"):
            if not sobject:
                raise ValueError(f"platform event channel {name}: name its object, e.g. {name}=Order")
            specs.append(TopicSpec(name, sobject, id_field))
        else:
            raise ValueError(f"not a change event or platform event channel: {name!r}")
    return specs


class HandlerFailed(Exception):
    """handle_ids or catch_up raised: nothing was stored; the batch will be delivered again."""


@dataclass
class _Delivery:
    """One FetchResponse, decoded: what to apply before its topic's replay id may be stored."""

    topic: str
    replay_id: str | None  # encoded; None: nothing to store
    ids: dict[str, dict[str, None]] = field(default_factory=dict)  # object -> ids, in order
    gaps: set[str] = field(default_factory=set)  # objects with an overflow gap: poll them

    @property
    def size(self) -> int:
        return sum(len(ids) for ids in self.ids.values())


@dataclass
class _Worker:
    spec: TopicSpec
    call: Any = None
    last_activity: float = field(default_factory=time.monotonic)
    busy: bool = False
    watchdog_fired: bool = False
    connected: bool = False
    force_latest: bool = False  # the stored replay id was refused: LATEST, then catch up
    token: Token | None = None  # the token the current stream was opened with


class EventListener:
    """Subscribes to the configured topics and hands record ids to `handle_ids(sobject, ids)`."""

    def __init__(
        self,
        settings: Settings,
        store: ReplayStore,
        handle_ids: Callable[[str, list[str]], None],
        *,
        topics: Sequence[str | TopicSpec] | str | None = None,
        catch_up: Callable[[str], None] | None = None,
        client: PubSubClient | None = None,
        batch_size: int = MAX_NUM_REQUESTED,
        stall_timeout: float = DEFAULT_STALL_TIMEOUT,
        backoff_initial: float = 0.5,
        backoff_max: float = 60.0,
        own_client_id: str = OWN_CLIENT_ID,
    ) -> None:
        if not 1 <= batch_size <= MAX_NUM_REQUESTED:
            raise ValueError(f"batch_size must be within 1..{MAX_NUM_REQUESTED}")
        self.settings = settings
        self.store = store
        self.handle_ids = handle_ids
        self.catch_up = catch_up
        self.client = client or PubSubClient(settings)
        self._own_client = client is None
        self.batch_size = batch_size
        self.stall_timeout = stall_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.own_origin = f"client={own_client_id}"
        id_field = settings.salesforce_pubsub_event_id_field
        raw = settings.salesforce_pubsub_topics if topics is None else topics
        if isinstance(raw, str):
            self.topics = parse_topics(raw, id_field)
        else:
            self.topics = [t for t in raw if isinstance(t, TopicSpec)] + parse_topics(
                [t for t in raw if isinstance(t, str)], id_field
            )
        self._workers = {spec.name: _Worker(spec) for spec in self.topics}
        self._handle_lock = threading.Lock()
        self._deliveries: queue.Queue[_Delivery] = queue.Queue(maxsize=QUEUE_DEPTH)
        self._stop = threading.Event()
        self._stats_lock = threading.Lock()
        self._stats: dict[str, Any] = {
            "events": 0,
            "skipped_own": 0,
            "ids_handled": 0,
            "handler_calls": 0,
            "handler_batches": 0,
            "handler_failures": 0,
            "connects": 0,
            "reconnects": 0,
            "watchdog_reconnects": 0,
            "auth_refreshes": 0,
            "replay_id_rejected": 0,
            "catch_ups": 0,
            "wildcards": 0,
            "errors": 0,
            "last_event_lag_seconds": None,
            "last_error": None,
        }

    # ------------------------------------------------------------------ public
    @property
    def stats(self) -> dict[str, Any]:
        """A snapshot of the counters, plus which topics have an open stream."""
        with self._stats_lock:
            snapshot = dict(self._stats)
        snapshot["connected"] = sorted(w.spec.name for w in self._workers.values() if w.connected)
        snapshot["queued_deliveries"] = self._deliveries.qsize()
        return snapshot

    def run(self, stop: threading.Event) -> None:
        """Listen until `stop` is set; returns after the batch in flight was handled and stored."""
        self._stop = stop
        threads = [
            threading.Thread(
                target=self._run_topic, args=(w, stop), name=f"pubsub {w.spec.name}", daemon=True
            )
            for w in self._workers.values()
        ]
        threads.append(threading.Thread(target=self._drain, args=(stop,), name="pubsub handler", daemon=True))
        for t in threads:
            t.start()
        try:
            while not stop.wait(0.25):
                self._watchdog()
        finally:
            for w in self._workers.values():
                self._cancel(w)
            for t in threads:
                t.join()
            if self._own_client:
                self.client.close()

    # ------------------------------------------------------------------ internals
    def _count(self, key: str, n: int = 1) -> None:
        with self._stats_lock:
            self._stats[key] += n

    def _note(self, **values: Any) -> None:
        with self._stats_lock:
            self._stats.update(values)

    @staticmethod
    def _cancel(worker: _Worker) -> None:
        call = worker.call
        if call is not None:
            call.cancel()

    def _watchdog(self) -> None:
        now = time.monotonic()
        for w in self._workers.values():
            if w.call is not None and not w.busy and now - w.last_activity > self.stall_timeout:
                log.warning("pubsub %s: no message for %.1f s, reconnecting", w.spec.name, self.stall_timeout)
                w.watchdog_fired = True
                w.last_activity = now
                self._count("watchdog_reconnects")
                self._cancel(w)

    def _backoff(self, attempt: int) -> float:
        delay: float = min(self.backoff_max, self.backoff_initial * (2 ** min(attempt, 16)))
        return delay * random.uniform(0.5, 1.0)

    def _run_topic(self, worker: _Worker, stop: threading.Event) -> None:
        attempt = 0  # consecutive failures: the backoff grows with it
        auth_failures = 0
        while not stop.is_set():
            try:
                self._subscribe_once(worker, stop)
                attempt = auth_failures = 0
                if stop.is_set():
                    break
                self._count("reconnects")  # the server closed the stream (idle close, restart)
                continue
            except grpc.RpcError as exc:
                if stop.is_set():
                    break
                if worker.watchdog_fired:
                    worker.watchdog_fired = False
                    continue
                if is_replay_id_error(exc):
                    log.warning(
                        "pubsub %s: stored replay id refused (%s); catching up by poll",
                        worker.spec.name,
                        exc.details() if hasattr(exc, "details") else exc,
                    )
                    self._count("replay_id_rejected")
                    worker.force_latest = True
                    continue
                if is_auth_error(exc):
                    self._count("auth_refreshes")
                    auth_failures += 1
                    try:
                        self.client.refresh(worker.token)
                        if auth_failures == 1:
                            continue  # a fresh token: reconnect at once
                    except Exception as auth_exc:
                        self._failed(worker.spec.name, auth_exc)
                else:
                    self._failed(worker.spec.name, exc)
            except HandlerFailed as exc:
                self._failed(worker.spec.name, exc.__cause__ or exc)
            except Exception as exc:  # auth trouble, decoding, anything: retry with backoff
                self._failed(worker.spec.name, exc)
            finally:
                worker.call = None
                worker.connected = False
            if stop.is_set():
                break
            stop.wait(self._backoff(attempt))
            attempt += 1
            self._count("reconnects")

    def _failed(self, topic: str, exc: BaseException) -> None:
        self._count("errors")
        self._note(last_error=f"{topic}: {type(exc).__name__}: {str(exc)[:300]}")
        log.warning("pubsub %s: %s: %s", topic, type(exc).__name__, str(exc)[:300])

    def _subscribe_once(self, worker: _Worker, stop: threading.Event) -> None:
        spec = worker.spec
        first = pb.FetchRequest(topic_name=spec.name, num_requested=self.batch_size)
        stored = None if worker.force_latest else self.store.replay_id(spec.name)
        if stored:
            raw = decode_replay_id(stored)
            if raw is None:  # unreadable: as good as refused
                self._count("replay_id_rejected")
                worker.force_latest = True
            else:
                first.replay_preset = pb.CUSTOM
                first.replay_id = raw
        if not first.replay_id:
            first.replay_preset = pb.LATEST

        requests: queue.Queue[Any] = queue.Queue()
        done = threading.Event()

        def fetch_requests() -> Iterator[Any]:
            yield first
            while not done.is_set() and not stop.is_set():
                try:
                    yield requests.get(timeout=0.5)
                except queue.Empty:
                    continue

        call, worker.token = self.client.subscribe(fetch_requests())
        worker.call = call
        worker.last_activity = time.monotonic()
        worker.connected = True
        self._count("connects")
        if stop.is_set():
            call.cancel()
        try:
            if worker.force_latest:
                self._catch_up(spec)
                self.store.set_replay_id(spec.name, None)
                worker.force_latest = False
            pending = self.batch_size
            for response in call:
                worker.last_activity = time.monotonic()
                if response.events:
                    self._enqueue(worker, self._decode(spec, response.events), stop)
                elif response.latest_replay_id:
                    # keepalive: once what came before is handled, resume from here, not far behind
                    keepalive = _Delivery(spec.name, encode_replay_id(response.latest_replay_id))
                    self._enqueue(worker, keepalive, stop)
                pending = response.pending_num_requested
                if pending <= 0:
                    requests.put(pb.FetchRequest(topic_name=spec.name, num_requested=self.batch_size))
                    pending = self.batch_size
        finally:
            done.set()

    def _enqueue(self, worker: _Worker, delivery: _Delivery, stop: threading.Event) -> None:
        """Hand a delivery to the handler; waits while the queue is full (the server holds the rest)."""
        worker.busy = True  # a full queue is not a silent stream: no watchdog meanwhile
        try:
            while not stop.is_set():
                try:
                    self._deliveries.put(delivery, timeout=0.25)
                    return
                except queue.Full:
                    continue
        finally:
            worker.busy = False
            worker.last_activity = time.monotonic()

    def _drain(self, stop: threading.Event) -> None:
        """The handler thread: everything queued since the last batch, applied as one batch."""
        while not stop.is_set():
            try:
                batch = [self._deliveries.get(timeout=0.25)]
            except queue.Empty:
                continue
            size = batch[0].size
            while size < MAX_BATCH_IDS:
                try:
                    batch.append(self._deliveries.get_nowait())
                except queue.Empty:
                    break
                size += batch[-1].size
            try:
                self._apply(batch)
            except HandlerFailed as exc:  # only while stopping: nothing after it is stored
                self._failed("handler", exc.__cause__ or exc)
                return

    def _apply(self, batch: list[_Delivery]) -> None:
        """Each object's ids once, then the gaps' catch-up polls, then each topic's last replay id."""
        ids: dict[str, dict[str, None]] = {}
        gaps: set[str] = set()
        last: dict[str, str | None] = {}
        for delivery in batch:
            for sobject, named in delivery.ids.items():
                ids.setdefault(sobject, {}).update(named)
            gaps |= delivery.gaps
            if delivery.replay_id:
                last[delivery.topic] = delivery.replay_id
        self._count("handler_batches")
        for sobject, named in ids.items():
            if named:
                self._handle(sobject, list(named))
        for sobject in sorted(gaps):  # an overflow gap names no records: poll that object
            self._until_done(f"catch_up({sobject})", partial(self._call_catch_up, sobject))
        for topic, replay_id in last.items():
            self.store.set_replay_id(topic, replay_id)

    def _catch_up(self, spec: TopicSpec) -> None:
        """A refused replay id, on the topic's thread: poll the object before following LATEST."""
        try:
            self._call_catch_up(spec.sobject)
        except Exception as exc:
            raise HandlerFailed(f"catch_up({spec.sobject}) failed") from exc

    def _call_catch_up(self, sobject: str) -> None:
        self._count("catch_ups")
        if self.catch_up is None:
            log.warning("pubsub: events for %s may have been missed; the next poll catches up", sobject)
            return
        with self._handle_lock:
            self.catch_up(sobject)

    def _handle(self, sobject: str, ids: list[str]) -> None:
        def call() -> None:
            with self._handle_lock:
                self.handle_ids(sobject, ids)

        self._until_done(f"handle_ids({sobject}, {len(ids)} ids)", call)
        self._count("handler_calls")
        self._count("ids_handled", len(ids))

    def _until_done(self, what: str, call: Callable[[], None]) -> None:
        """Retried in place with backoff: reopening the stream could not bring the events back when
        no replay id was stored yet (a LATEST stream has no position before its first event)."""
        attempt = 0
        while True:
            try:
                call()
                return
            except Exception as exc:
                self._count("handler_failures")
                self._failed("handler", exc)
                if self._stop.is_set():
                    raise HandlerFailed(f"{what} failed") from exc
                self._stop.wait(self._backoff(attempt))
                attempt += 1

    def _is_own(self, header: dict[str, Any]) -> bool:
        origin = str(header.get("changeOrigin") or "")
        if any(part.strip() == self.own_origin for part in origin.split(";")):
            return True
        user = self.client.user_id
        return bool(user) and header.get("commitUser") == user

    def _decode(self, spec: TopicSpec, events: Sequence[Any]) -> _Delivery:
        """The ids the events name, per object (the connector's own changes left out)."""
        delivery = _Delivery(spec.name, encode_replay_id(events[-1].replay_id))
        groups, gaps = delivery.ids, delivery.gaps
        now = time.time()
        for consumer_event in events:
            record = self.client.decode(consumer_event.event)
            self._count("events")
            header = record.get("ChangeEventHeader")
            if isinstance(header, dict):
                self._note(
                    last_event_lag_seconds=max(0.0, now - int(header.get("commitTimestamp") or 0) / 1000)
                )
                if self._is_own(header):
                    self._count("skipped_own")
                    continue
                sobject = str(header.get("entityName") or spec.sobject)
                if str(header.get("changeType", "")).startswith("GAP_") and not header.get("recordIds"):
                    gaps.add(sobject)
                ids = [str(i) for i in header.get("recordIds") or () if i]
                if any(i.endswith("*") for i in ids):
                    # "001*": every record of the object may have changed (Salesforce sends this
                    # after some schema changes). No id to fetch: poll the object, like a gap.
                    self._count("wildcards")
                    gaps.add(sobject)
                    ids = [i for i in ids if not i.endswith("*")]
            else:
                created = record.get("CreatedDate")
                if isinstance(created, int):
                    self._note(last_event_lag_seconds=max(0.0, now - created / 1000))
                user = self.client.user_id
                if user and record.get("CreatedById") == user:
                    self._count("skipped_own")
                    continue
                sobject = spec.sobject
                value = record.get(spec.id_field or "")
                ids = [str(value)] if value else []
            bucket = groups.setdefault(sobject, {})
            for record_id in ids:
                bucket[record_id] = None
        return delivery
