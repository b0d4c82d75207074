"""Crash points for the crash-recovery tests and the chaos suite.

`crash_point("customer.after_create")` kills the process on the spot (no cleanup, like
SIGKILL) when CPQ2STRIPE_TEST_CRASH_AT names that point. Production runs never set it.
"""

from __future__ import annotations

import os

ENV = "CPQ2STRIPE_TEST_CRASH_AT"
EXIT_CODE = 86


def crash_point(name: str) -> None:
    if os.environ.get(ENV) == name:
        os._exit(EXIT_CODE)
