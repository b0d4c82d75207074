"""The gateway's pooled HTTP client fails, and is retried, exactly where stripe-python's
RequestsClient is, and its worker threads share connections.

Each case runs against a scripted loopback server with both clients side by side; stripe-python's
own `max_network_retries` does the retrying, so "attempts" is what the server saw.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import stripe

from connector.stripe_sink.gateway import PooledHTTPClient, http_client_for

RETRIES = 2
CUSTOMER = json.dumps({"id": "cus_1", "object": "customer", "name": "A"}).encode()


class Scripted(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, behaviour: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.behaviour = behaviour
        self.requests = 0
        self.connections = 0
        self.request_lines: list[str] = []
        self.lock = threading.Lock()
        self.release = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(socketserver.StreamRequestHandler):
    server: Scripted

    def handle(self) -> None:
        with self.server.lock:
            self.server.connections += 1
        if self.server.behaviour == "plain":  # answers before any request: not TLS
            self.wfile.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            return
        while True:
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                chunk = self.rfile.readline()
                if not chunk:
                    return
                head += chunk
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                ),
                0,
            )
            self.rfile.read(length)
            with self.server.lock:
                self.server.requests += 1
                self.server.request_lines.append(head.split(b"\r\n")[0].decode())
            behaviour = self.server.behaviour
            if behaviour == "close":  # the request arrived; no answer at all
                return
            if behaviour == "silent":  # never answers: the client's read timeout
                self.server.release.wait(10)
                return
            if behaviour == "cut":  # headers, then the body stops short
                self.wfile.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n"
                )
                self.wfile.write(CUSTOMER[:10])
                self.wfile.flush()
                return
            if behaviour == "redirect":
                self.wfile.write(
                    b"HTTP/1.1 301 Moved Permanently\r\nLocation: /v1/customers\r\nContent-Length: 0\r\n\r\n"
                )
                self.wfile.flush()
                continue
            if behaviour == "retry-500":
                body, status = (
                    b'{"error": {"type": "api_error", "message": "boom"}}',
                    b"500 Internal Server Error",
                )
            else:
                body, status = CUSTOMER, b"200 OK"
            self.wfile.write(
                b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\nRequest-Id: req_1\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
            self.wfile.flush()


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[Callable[[str], Scripted]]:
    started: list[Scripted] = []

    def start(behaviour: str) -> Scripted:
        srv = Scripted(behaviour)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.release.set()
        srv.shutdown()
        srv.server_close()


def _no_sleep(client: stripe.HTTPClient) -> stripe.HTTPClient:
    client._sleep_time_seconds = lambda num_retries: 0.0  # type: ignore[method-assign]
    return client


CLIENTS: dict[str, Callable[[], stripe.HTTPClient]] = {
    "requests": lambda: stripe.RequestsClient(timeout=0.5),
    "pooled": lambda: PooledHTTPClient(timeout=0.5),
}


def _call(url: str, http_client: stripe.HTTPClient) -> Any:
    client = stripe.StripeClient(
        "sk_test_123",
        base_addresses={"api": url},
        max_network_retries=RETRIES,
        http_client=_no_sleep(http_client),
    )
    return client.v1.customers.create(params={"name": "A"})


@pytest.mark.parametrize("kind", sorted(CLIENTS))
def test_a_good_answer_reads_the_same(server: Callable[[str], Scripted], kind: str) -> None:
    srv = server("ok")
    customer = _call(srv.url, CLIENTS[kind]())
    assert customer.id == "cus_1" and customer.name == "A"
    assert customer.last_response.request_id == "req_1"
    client = stripe.StripeClient("sk_test_123", base_addresses={"api": srv.url}, http_client=CLIENTS[kind]())
    assert client.v1.customers.retrieve("cus_1").id == "cus_1"
    assert srv.request_lines == ["POST /v1/customers HTTP/1.1", "GET /v1/customers/cus_1 HTTP/1.1"]


@pytest.mark.parametrize(
    ("behaviour", "retried"),
    [
        ("close", True),  # connection dropped before any answer: nothing was applied, retried
        ("silent", True),  # read timeout: retried (Stripe's idempotency keys make that safe)
        ("cut", False),  # the body cut short after the headers: not retried
        ("retry-500", True),  # a 5xx answer: stripe-python's own rule
    ],
)
def test_failures_are_retried_exactly_as_with_requests(
    server: Callable[[str], Scripted], behaviour: str, retried: bool
) -> None:
    outcomes = {}
    for kind, make in CLIENTS.items():
        srv = server(behaviour)
        with pytest.raises(stripe.StripeError) as caught:
            _call(srv.url, make())
        srv.release.set()
        error = caught.value
        outcomes[kind] = (type(error).__name__, getattr(error, "should_retry", None), srv.requests)
    assert outcomes["pooled"] == outcomes["requests"], outcomes
    assert outcomes["pooled"][2] == (1 + RETRIES if retried else 1)


@pytest.mark.parametrize("kind", sorted(CLIENTS))
def test_refused_connection_is_retried(kind: str) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(stripe.APIConnectionError) as caught:
        _call(f"http://127.0.0.1:{port}", CLIENTS[kind]())
    assert caught.value.should_retry is True


@pytest.mark.parametrize("kind", sorted(CLIENTS))
def test_tls_failure_is_not_retried(server: Callable[[str], Scripted], kind: str) -> None:
    srv = server("plain")  # plain HTTP behind an https:// address: the handshake fails
    with pytest.raises(stripe.APIConnectionError) as caught:
        _call(srv.url.replace("http://", "https://"), CLIENTS[kind]())
    assert caught.value.should_retry is False
    assert "SSL certificate" in str(caught.value)


def test_a_redirect_is_an_error_not_a_second_request(server: Callable[[str], Scripted]) -> None:
    """requests followed it (the POST became a GET of the list); the API never redirects."""
    srv = server("redirect")
    with pytest.raises(stripe.APIError):
        _call(srv.url, PooledHTTPClient(timeout=0.5))
    assert srv.request_lines == ["POST /v1/customers HTTP/1.1"]


def test_worker_threads_share_connections_across_pools(server: Callable[[str], Scripted]) -> None:
    """Each batch runs on fresh worker threads; their calls reuse the connections of the last."""
    srv = server("ok")
    client = stripe.StripeClient(
        "sk_test_123", base_addresses={"api": srv.url}, http_client=PooledHTTPClient()
    )
    for _batch in range(3):
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda _i: client.v1.customers.create(params={"name": "A"}), range(40)))
    assert srv.requests == 120
    assert srv.connections <= 4


def test_a_proxy_from_the_environment_keeps_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    from connector.settings import Settings

    settings = Settings.model_construct(
        stripe_api_base="https://api.stripe.com", stripe_timeout_seconds=80.0
    )  # only what http_client_for reads
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert isinstance(http_client_for(settings), PooledHTTPClient)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    assert isinstance(http_client_for(settings), stripe.RequestsClient)
    monkeypatch.setenv("NO_PROXY", "api.stripe.com")
    assert isinstance(http_client_for(settings), PooledHTTPClient)
