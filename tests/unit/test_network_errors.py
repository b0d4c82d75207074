"""A network error says where the connector could not reach and why, in words an operator acts on
(a dry run that cannot log in to Salesforce must say why it stopped)."""

from __future__ import annotations

import socket

import pytest
import requests

from connector.errors import Disposition, classify


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_connection_refused_names_the_host_and_the_reason_not_the_path():
    port = _closed_port()
    with pytest.raises(requests.ConnectionError) as err:
        requests.post(f"https://127.0.0.1:{port}/services/oauth2/token?client_id=secret", timeout=5)
    verdict = classify(err.value)
    assert verdict.disposition is Disposition.RETRY
    assert verdict.message == (
        f"network error: ConnectionError reaching https://127.0.0.1:{port}: "
        "connection refused (nothing listens there: check the URL and port)"
    )


def test_an_unknown_reason_still_names_the_kind_of_error():
    assert classify(requests.ConnectionError("something odd")).message == "network error: ConnectionError"
