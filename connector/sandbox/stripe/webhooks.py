"""Webhook delivery: each event POSTed to the enabled endpoints that want its type, signed as
Stripe signs (the `Stripe-Signature` header `t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>"
keyed by the endpoint's whsec_ secret>`), so stripe-python's `Webhook.construct_event` accepts it.

One background thread sends in the order events were made (Stripe does not promise an order);
one attempt each (Stripe retries for up to three days); the outcome is kept for tests.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the machine's proxy never applies


def signature(secret: str, payload: str, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


@dataclass(frozen=True)
class Delivery:
    endpoint: str
    event: str
    status: int | None  # the endpoint's HTTP status; None when it could not be reached
    error: str | None = None


class WebhookSender:
    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[str, str, str, str]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.deliveries: list[Delivery] = []

    def send(self, endpoint_id: str, url: str, secret: str, event: dict[str, Any]) -> None:
        self._queue.put((endpoint_id, url, secret, json.dumps(event, indent=2)))
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="stripe-webhooks", daemon=True)
                self._thread.start()

    def idle(self) -> bool:
        """Nothing queued or in flight (for tests that wait for a delivery)."""
        return self._queue.unfinished_tasks == 0

    def _run(self) -> None:
        while True:
            endpoint_id, url, secret, body = self._queue.get()
            try:
                self._post(endpoint_id, url, secret, body)
            finally:
                self._queue.task_done()

    def _post(self, endpoint_id: str, url: str, secret: str, body: str) -> None:
        event_id = json.loads(body)["id"]
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            "Stripe-Signature": signature(secret, body, int(time.time())),
        }
        request = urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")
        try:
            with _OPENER.open(request, timeout=10) as response:
                status, error = response.status, None
        except urllib.error.HTTPError as exc:
            status, error = exc.code, str(exc)
        except (OSError, ValueError) as exc:
            status, error = None, str(exc)
        self.deliveries.append(Delivery(endpoint_id, event_id, status, error))
