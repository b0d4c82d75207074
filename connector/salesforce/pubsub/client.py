"""A thin client of Salesforce's Pub/Sub API: TLS channel, auth metadata, topics, schemas, Avro.

Auth is the connector's own OAuth token (`salesforce.auth.authenticate`) sent as the
`accesstoken` / `instanceurl` / `tenantid` metadata Salesforce asks for; `refresh(stale)` swaps it
after an UNAUTHENTICATED answer. Schemas are fetched once per schema id: a topic's events all
carry the id of the schema their payload was written with.
"""

from __future__ import annotations

import base64
import io
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import fastavro
import grpc
import requests

from connector.salesforce.auth import Token, authenticate
from connector.salesforce.pubsub import pubsub_api_pb2 as pb
from connector.salesforce.pubsub import pubsub_api_pb2_grpc as pb_grpc
from connector.settings import Settings

# Salesforce puts its own error code in the `error-code` trailer of a failed call.
REPLAY_ID_ERROR_CODES = frozenset(
    {
        "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted",
        "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.validation.failed",
    }
)
AUTH_ERROR_CODES = frozenset({"sfdc.platform.eventbus.grpc.service.auth.error"})
MAX_NUM_REQUESTED = 100


# A failed call's trailing metadata as grpc hands it over at run time: (key, value) pairs (its
# _Metadatum is a namedtuple), or None before the call has ended. types-grpcio declares a tuple of a
# non-iterable _Metadatum class instead.
_Trailers = Iterable[tuple[str, str | bytes]] | None


def error_code(exc: grpc.RpcError) -> str:
    trailers = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    for key, value in cast(_Trailers, trailers) or ():
        if key.lower() == "error-code":
            return str(value)
    return ""


def status_code(exc: grpc.RpcError) -> grpc.StatusCode | None:
    return exc.code() if hasattr(exc, "code") else None


def is_replay_id_error(exc: grpc.RpcError) -> bool:
    """Salesforce refuses the replay id: expired (older than retention), never issued, corrupted."""
    if error_code(exc) in REPLAY_ID_ERROR_CODES:
        return True
    details = (exc.details() if hasattr(exc, "details") else "") or ""
    return status_code(exc) == grpc.StatusCode.INVALID_ARGUMENT and "replay" in details.lower()


def is_auth_error(exc: grpc.RpcError) -> bool:
    return status_code(exc) == grpc.StatusCode.UNAUTHENTICATED or error_code(exc) in AUTH_ERROR_CODES


def encode_replay_id(raw: bytes) -> str:
    """How a replay id is stored (state store column): base64 of the opaque bytes."""
    return base64.b64encode(raw).decode("ascii")


def decode_replay_id(text: str) -> bytes | None:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        return None
    return raw or None


def channel_target(url: str) -> str:
    """`host:port` from `host:port`, `https://host:port` or `https://host` (port 443)."""
    text = url.strip().rstrip("/")
    for prefix in ("https://", "grpcs://", "dns:///"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
            if prefix == "https://" and ":" not in text.split("/")[0]:
                text += ":443"
    return text


@dataclass(frozen=True)
class Schema:
    schema_id: str
    parsed: Any


class PubSubClient:
    """One TLS channel to the Pub/Sub API and the current token (thread-safe)."""

    def __init__(
        self,
        settings: Settings,
        *,
        session: requests.Session | None = None,
        channel: grpc.Channel | None = None,
        auth: Callable[[Settings, requests.Session], Token] = authenticate,
    ) -> None:
        self.settings = settings
        if session is None:
            from connector.salesforce.session import session_from_settings

            session = session_from_settings(settings)
        self._session = session
        self._auth = auth
        self._lock = threading.Lock()
        self._token: Token | None = None
        self._schemas: dict[str, Schema] = {}
        self._topic_schema: dict[str, str] = {}
        if channel is None:
            ca = settings.salesforce_ca_bundle
            credentials = grpc.ssl_channel_credentials(root_certificates=ca.read_bytes() if ca else None)
            channel = grpc.secure_channel(
                channel_target(settings.salesforce_pubsub_url),
                credentials,
                options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)],
            )
        self.channel = channel
        self.stub = pb_grpc.PubSubStub(channel)

    # ------------------------------------------------------------------ auth
    def token(self) -> Token:
        with self._lock:
            if self._token is None:
                self._token = self._auth(self.settings, self._session)
            return self._token

    def refresh(self, stale: Token | None) -> Token:
        """A new token unless another thread already replaced `stale`."""
        with self._lock:
            if self._token is None or self._token is stale:
                self._token = self._auth(self.settings, self._session)
            return self._token

    @property
    def user_id(self) -> str | None:
        return self.token().user_id

    def metadata(self, token: Token) -> tuple[tuple[str, str], ...]:
        return (
            ("accesstoken", token.access_token.get_secret_value()),
            ("instanceurl", token.instance_url),
            ("tenantid", token.org_id or ""),
        )

    # ------------------------------------------------------------------ calls
    def get_topic(self, topic_name: str, *, timeout: float = 30) -> Any:
        token = self.token()
        return self.stub.GetTopic(
            pb.TopicRequest(topic_name=topic_name), metadata=self.metadata(token), timeout=timeout
        )

    def schema(self, schema_id: str, *, timeout: float = 30) -> Schema:
        with self._lock:
            cached = self._schemas.get(schema_id)
        if cached is not None:
            return cached
        token = self.token()
        info = self.stub.GetSchema(
            pb.SchemaRequest(schema_id=schema_id), metadata=self.metadata(token), timeout=timeout
        )
        schema = Schema(schema_id, fastavro.parse_schema(json.loads(info.schema_json)))
        with self._lock:
            self._schemas[schema_id] = schema
        return schema

    def decode(self, event: Any) -> dict[str, Any]:
        """The Avro payload of a ProducerEvent as a dict, written with the schema it names."""
        schema = self.schema(event.schema_id)
        return fastavro.schemaless_reader(io.BytesIO(event.payload), schema.parsed, schema.parsed)  # type: ignore[return-value]

    def subscribe(self, requests_iter: Iterator[Any]) -> tuple[Any, Token]:
        """Open a Subscribe stream; returns the call (iterate it, `cancel()` it) and the token used."""
        token = self.token()
        return self.stub.Subscribe(requests_iter, metadata=self.metadata(token)), token

    def publish(self, topic_name: str, record: dict[str, Any], *, timeout: float = 30) -> Any:
        """Publish one event (platform event channels), Avro-encoded with the topic's schema."""
        info = self.get_topic(topic_name, timeout=timeout)
        schema = self.schema(info.schema_id)
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, schema.parsed, record)
        token = self.token()
        request = pb.PublishRequest(
            topic_name=topic_name, events=[pb.ProducerEvent(schema_id=info.schema_id, payload=buf.getvalue())]
        )
        return self.stub.Publish(request, metadata=self.metadata(token), timeout=timeout)

    def close(self) -> None:
        self.channel.close()
