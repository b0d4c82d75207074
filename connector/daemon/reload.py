"""Reload the mappings when their files change; a broken edit keeps the last good mapping.

Checked every few seconds from a scheduler job: a cheap stat of the files first, the content hash
only when a stat changed, a full load only when the content changed. A failed load is logged once
per distinct content (each problem on its own line, with file:line and the fix).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path

from connector.mapping import MappingError, Mappings, load_mappings
from connector.mapping.loader import FILES

log = logging.getLogger(__name__)


def _stat(directory: Path) -> tuple[tuple[str, int | None, int | None, int | None], ...]:
    out: list[tuple[str, int | None, int | None, int | None]] = []
    for kind in FILES:
        path = directory / f"{kind}.yaml"
        try:
            st = path.stat()
            out.append((kind, st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            out.append((kind, None, None, None))
    return tuple(out)


def _digest(directory: Path) -> str:
    h = hashlib.sha256()
    for kind in FILES:
        h.update(kind.encode())
        try:
            h.update((directory / f"{kind}.yaml").read_bytes())
        except OSError:
            h.update(b"\0missing")
    return h.hexdigest()


class MappingWatcher:
    def __init__(self, directory: Path, mappings: Mappings) -> None:
        self.directory = Path(directory)
        self._lock = threading.Lock()
        self._current = mappings
        self._stat = _stat(self.directory)
        self._good_digest = _digest(self.directory)
        self._seen_digest = self._good_digest
        self.version = 1
        self.last_error: str | None = None

    @property
    def current(self) -> Mappings:
        with self._lock:
            return self._current

    def check(self) -> bool | None:
        """True: reloaded; False: a changed file failed to load (kept the last good); None: no change."""
        stat = _stat(self.directory)
        if stat == self._stat:
            return None
        self._stat = stat
        digest = _digest(self.directory)
        if digest == self._seen_digest:
            return None
        self._seen_digest = digest
        try:
            mappings = load_mappings(self.directory)
        except MappingError as exc:
            self.last_error = f"{len(exc.problems)} problem(s)"
            log.error(
                "mapping reload failed: keeping the last good mapping (version %d); %d problem(s):",
                self.version,
                len(exc.problems),
            )
            for problem in exc.problems:
                log.error("mapping problem: %s", problem)
            return False
        except Exception as exc:  # an unreadable directory, a race with an editor's rename
            self.last_error = str(exc)
            log.error("mapping reload failed: keeping the last good mapping: %s", exc)
            self._seen_digest = ""  # try again on the next change or check
            return False
        with self._lock:
            self._current = mappings
            self._good_digest = digest
            self.version += 1
            self.last_error = None
        log.info("mappings reloaded from %s (version %d)", self.directory, self.version)
        return True
