"""Jobs other modules provide, run by the daemon when they exist (reconcile drift, detect merges).

The daemon looks for a module-level `daemon_job(ctx, report)` first — the hook a module adds to
be scheduled — then for a few likely entry points. A missing module means the job is not
scheduled (logged once at start), never an error.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

from connector.sync.context import SyncContext
from connector.sync.report import RunReport

log = logging.getLogger(__name__)

Job = Callable[[SyncContext, RunReport], Any]

CANDIDATES: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    # job: (module, function names taking (ctx, report), class names built with ctx)
    "reconcile": ("connector.sync.reconcile", ("daemon_job", "reconcile", "run_reconcile"), ("Reconciler",)),
    "merges": (
        "connector.sync.merges",
        ("daemon_job", "detect_merges", "run_merges"),
        ("MergeDetector", "MergeSync"),
    ),
}
_METHODS = ("run", "detect", "poll", "reconcile")


def _from_class(cls: type) -> Job | None:
    for method in _METHODS:
        if callable(getattr(cls, method, None)):
            return lambda ctx, report, _cls=cls, _m=method: getattr(_cls(ctx), _m)(report)
    return None


def find_job(job: str) -> Job | None:
    module_name, functions, classes = CANDIDATES[job]
    try:
        module: Any = importlib.import_module(module_name)
    except ImportError:
        return None
    for name in functions:
        fn = getattr(module, name, None)
        if callable(fn):
            return fn
    for name in classes:
        cls = getattr(module, name, None)
        if isinstance(cls, type):
            found = _from_class(cls)
            if found is not None:
                return found
    log.warning(
        "%s exists but has no daemon entry point (add `daemon_job(ctx, report)`); not scheduled", module_name
    )
    return None
