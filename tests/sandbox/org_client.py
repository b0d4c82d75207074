"""A simple-salesforce client on a fake org started by a test module (its own server), reset first."""

from __future__ import annotations

import requests
from simple_salesforce import Salesforce

from connector.sandbox.salesforce.server import SalesforceSandbox


def org_session(sb: SalesforceSandbox) -> requests.Session:
    """HTTP to the fake org over its own CA, ignoring the environment's proxies and bundles."""
    s = requests.Session()
    s.verify = str(sb.ca_file)
    s.trust_env = False
    return s


def fresh_client(sb: SalesforceSandbox) -> Salesforce:
    """Reset the org, log in with the client credentials flow, return the client."""
    org_session(sb).post(f"{sb.url}/_sandbox/reset")
    tok = (
        org_session(sb)
        .post(
            f"{sb.url}/services/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "sandbox-client",
                "client_secret": "sandbox-secret",
            },
        )
        .json()
    )
    return Salesforce(
        instance_url=tok["instance_url"],
        session_id=tok["access_token"],
        session=org_session(sb),
        version="61.0",
    )
