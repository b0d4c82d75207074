"""Mapping reload while running: a good edit is picked up, a broken one keeps the last good."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from connector.daemon.reload import MappingWatcher
from connector.mapping import load_mappings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def mappings_dir(tmp_path: Path) -> Path:
    target = tmp_path / "mappings"
    shutil.copytree(REPO / "mappings", target)
    return target


def _edit(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def test_no_change_means_no_reload(mappings_dir):
    watcher = MappingWatcher(mappings_dir, load_mappings(mappings_dir))
    assert watcher.check() is None
    # Touched but identical content: still nothing to do.
    path = mappings_dir / "customer.yaml"
    _edit(path, path.read_text(encoding="utf-8"))
    assert watcher.check() is None
    assert watcher.version == 1


def test_valid_edit_is_loaded(mappings_dir):
    watcher = MappingWatcher(mappings_dir, load_mappings(mappings_dir))
    path = mappings_dir / "customer.yaml"
    _edit(path, path.read_text(encoding="utf-8") + "\n# a comment added by the admin\n")
    assert watcher.check() is True
    assert watcher.version == 2
    assert watcher.last_error is None


def test_broken_edit_keeps_the_last_good_and_logs_every_problem_once(mappings_dir, caplog):
    good = load_mappings(mappings_dir)
    watcher = MappingWatcher(mappings_dir, good)
    path = mappings_dir / "customer.yaml"
    original = path.read_text(encoding="utf-8")
    _edit(path, original + "\nbogus_one: 1\nbogus_two: 2\n")

    with caplog.at_level(logging.ERROR, logger="connector.daemon.reload"):
        assert watcher.check() is False
    assert watcher.current is good
    assert watcher.version == 1
    problems = [r.getMessage() for r in caplog.records if r.getMessage().startswith("mapping problem:")]
    assert len(problems) == 2
    assert any("bogus_one" in p for p in problems) and any("bogus_two" in p for p in problems)
    assert "keeping the last good mapping" in caplog.text

    caplog.clear()
    assert watcher.check() is None  # the same broken content is not reported again
    assert caplog.text == ""

    _edit(path, original)  # fixed again
    assert watcher.check() is True
    assert watcher.current is not good
    assert watcher.last_error is None


def test_deleted_file_keeps_the_last_good(mappings_dir):
    good = load_mappings(mappings_dir)
    watcher = MappingWatcher(mappings_dir, good)
    (mappings_dir / "subscription.yaml").unlink()
    assert watcher.check() is False
    assert watcher.current is good
