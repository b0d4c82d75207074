"""A small threaded HTTP(S) server with a router, shared by the fake org and fake Stripe.

Standard library only: keep-alive HTTP/1.1, one thread per connection, optional TLS. Each server
gets the same knobs the admin APIs expose: latency per request, request counters per endpoint.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    params: dict[str, str] = field(default_factory=dict)  # path parameters from the route
    client: str = ""

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8")) if self.body else None

    def query_dict(self) -> dict[str, str]:
        return dict(self.query)


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        hdrs = {"Content-Type": "application/json;charset=UTF-8"}
        hdrs.update(headers or {})
        return cls(status, body, hdrs)

    @classmethod
    def text(cls, text: str, status: int = 200, content_type: str = "text/plain; charset=utf-8") -> Response:
        return cls(status, text.encode("utf-8"), {"Content-Type": content_type})


Handler = Callable[[Request], Response]


class Router:
    """Maps (method, path pattern) to handlers. Patterns use `{name}` for one path segment
    and `{name:path}` for the rest of the path."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], str, Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        regex = re.sub(r"\{(\w+):path\}", r"(?P<\1>.+)", pattern)
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", regex)
        self._routes.append((method.upper(), re.compile(f"^{regex}$"), pattern, handler))

    def route(self, method: str, path: str) -> tuple[Handler, dict[str, str], str] | None:
        """The handler, its path parameters and the route pattern (for counters); None if no
        route matches. A path that matches with another method yields a 405 handler."""
        wrong_method = False
        for m, regex, pattern, handler in self._routes:
            match = regex.match(path)
            if match:
                if m == method.upper():
                    return handler, match.groupdict(), pattern
                wrong_method = True
        if wrong_method:
            return (lambda _r: Response.json({"error": "method not allowed"}, 405)), {}, "405"
        return None


class ServerKnobs:
    """What the admin API can turn: latency and counters. Thread-safe."""

    def __init__(self, latency_ms: float = 0.0) -> None:
        self.latency_ms = latency_ms
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def count(self, key: str) -> None:
        with self._lock:
            self.counts[key] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    def reset_counts(self) -> None:
        with self._lock:
            self.counts.clear()


NotFound = Callable[[Request], Response]


def _make_handler_class(
    router: Router, knobs: ServerKnobs, not_found: NotFound, server_name: str
) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Buffer each response and write it in one go (flushed per request by the base class),
        # and turn Nagle off: otherwise headers and body leave as two segments and delayed ACKs
        # cap keep-alive clients at ~25 requests/s.
        wbufsize = 64 * 1024
        disable_nagle_algorithm = True
        server_version = server_name
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:  # quiet by default
            return

        def _handle(self) -> None:
            split = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if len(body) < length:
                # the client died mid-request: a real server never acts on half a body
                self.close_connection = True
                return
            req = Request(
                method=self.command,
                path=split.path,
                query=parse_qsl(split.query, keep_blank_values=True),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
                client=self.client_address[0],
            )
            found = router.route(self.command, split.path)
            if found is None:
                knobs.count(f"{self.command} <unknown>")
                resp = not_found(req)
            else:
                handler, params, pattern = found
                req.params = params
                if not pattern.startswith("/_sandbox"):
                    knobs.count(f"{self.command} {pattern}")
                    if knobs.latency_ms:
                        time.sleep(knobs.latency_ms / 1000.0)
                try:
                    resp = handler(req)
                except Exception as exc:  # a bug in the fake: answer 500 like a real server would
                    resp = Response.json(
                        {"error": f"sandbox internal error: {type(exc).__name__}: {exc}"}, 500
                    )
            if resp.status < 0:  # a handler asked to drop the connection without answering
                self.close_connection = True
                return
            self.send_response(resp.status)
            for k, v in resp.headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(resp.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(resp.body)

        do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = do_HEAD = _handle

    return _Handler


class SandboxServer:
    """Runs a router on 127.0.0.1 in a background thread. `port=0` picks a free port."""

    def __init__(
        self,
        router: Router,
        knobs: ServerKnobs,
        not_found: NotFound,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        name: str = "sandbox",
    ) -> None:
        handler_cls = _make_handler_class(router, knobs, not_found, name)
        self._httpd = ThreadingHTTPServer((host, port), handler_cls)
        self._httpd.daemon_threads = True
        if ssl_context is not None:
            # Handshake in the connection's own thread, not in accept(): one slow client must not
            # stall the listener.
            self._httpd.socket = ssl_context.wrap_socket(
                self._httpd.socket, server_side=True, do_handshake_on_connect=False
            )
        self.scheme = "https" if ssl_context else "http"
        self.host = host
        self.port = self._httpd.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def start(self) -> SandboxServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name=f"{self.url}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(timeout=5)
