"""Logging setup: readable lines by default, one JSON object per line with --json-logs.

Record actions are logged by the pipeline with `extra={"record": {...}}`; secrets never reach a
log call (settings hold them as SecretStr), and `redact` masks anything key-shaped that might
arrive inside a third-party error message.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

_SECRET_PATTERNS = [
    re.compile(r"\b(sk|rk|pk)_(live|test)_[A-Za-z0-9]+"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9!._\-]+"),
    re.compile(r"(?i)(client_secret|access_token|assertion)=([^&\s]+)"),
]


def redact(text: str) -> str:
    """Mask Stripe keys, bearer tokens and OAuth secrets inside free text."""
    text = _SECRET_PATTERNS[0].sub(lambda m: f"{m.group(1)}_{m.group(2)}_****", text)
    text = _SECRET_PATTERNS[1].sub(lambda m: f"{m.group(1)}****", text)
    return _SECRET_PATTERNS[2].sub(lambda m: f"{m.group(1)}=****", text)


class _RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(str(record.getMessage()))
        record.args = ()
        return True


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if isinstance(getattr(record, "record", None), dict):
            entry["record"] = record.record  # type: ignore[attr-defined]
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(*, level: str = "INFO", json_lines: bool = False) -> None:
    """The connector logs at `level`; other libraries only their warnings (all of it at DEBUG)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RedactingFilter())
    handler.setFormatter(
        _JsonFormatter()
        if json_lines
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    numeric = logging.getLevelNamesMapping()[level]
    others = numeric if numeric == logging.DEBUG else max(numeric, logging.WARNING)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(others)
    logging.getLogger("connector").setLevel(numeric)
    for noisy in ("urllib3", "stripe", "simple_salesforce", "apscheduler"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))
