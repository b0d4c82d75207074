"""TLS for the fake org: a throwaway CA (trustme) and a certificate for 127.0.0.1/localhost.

The CA goes to DIR/ca.pem so clients can trust exactly this server (SALESFORCE_CA_BUNDLE).
"""

from __future__ import annotations

import ssl
from pathlib import Path

import trustme


def make_server_context(directory: Path) -> tuple[ssl.SSLContext, Path]:
    """A server SSLContext and the path of the CA file clients should trust."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="cpq2stripe sandbox")
    cert = ca.issue_cert("127.0.0.1", "localhost", "::1")
    ca_file = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context, ca_file
