"""The local run's secret key: generated once into a file, then read back by every process."""

from __future__ import annotations

import multiprocessing
import stat

import pytest
from django.core.exceptions import ImproperlyConfigured

from transcribe_site.secret_key import MIN_LENGTH, load_or_create_secret_key


def test_the_key_is_made_once_and_then_reused(tmp_path):
    path = tmp_path / "var" / "secret_key"  # the folder is made too
    first = load_or_create_secret_key(path)
    assert len(first) >= MIN_LENGTH
    assert path.read_text().strip() == first
    assert load_or_create_secret_key(path) == first
    assert [p.name for p in path.parent.iterdir()] == ["secret_key"]  # no temporary file left behind


def test_the_key_file_is_readable_by_its_owner_only(tmp_path):
    path = tmp_path / "secret_key"
    load_or_create_secret_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_another_folder_gets_another_key(tmp_path):
    assert load_or_create_secret_key(tmp_path / "a" / "secret_key") != load_or_create_secret_key(
        tmp_path / "b" / "secret_key"
    )


def test_a_damaged_key_file_stops_start_up_with_a_message(tmp_path):
    path = tmp_path / "secret_key"
    path.write_text("short\n")
    with pytest.raises(ImproperlyConfigured, match="holds no usable secret key"):
        load_or_create_secret_key(path)
    assert path.read_text() == "short\n"  # left for the operator to look at, not replaced silently


def _load(path: str, keys) -> None:
    from pathlib import Path

    keys.put(load_or_create_secret_key(Path(path)))


def test_processes_starting_together_all_get_the_same_key(tmp_path):
    """daphne and the Celery worker start at once; whoever loses the race reads the winner's key."""
    context = multiprocessing.get_context("spawn")
    keys = context.Queue()
    path = str(tmp_path / "secret_key")
    processes = [context.Process(target=_load, args=(path, keys)) for _ in range(4)]
    for process in processes:
        process.start()
    found = {keys.get(timeout=60) for _ in processes}
    for process in processes:
        process.join(timeout=60)
    assert found == {(tmp_path / "secret_key").read_text().strip()}
