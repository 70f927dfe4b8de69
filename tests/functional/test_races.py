"""Shared state under concurrency: two writers at once lose nothing and revert nothing.

Each test stages the race the way it happens in the field (two processes, a job that
runs while another commits) and fails on the code before its fix.
"""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path

from hub_cache.prefetch import _swap_in
from mirror.config import DevpiConfig
from mirror.devpi import DevpiClient, DevpiError
from tests.conftest import DEVPI_TEST_PASSWORD


def test_devpi_bootstrapped_from_two_places_at_once_never_fails(devpi: DevpiConfig) -> None:
    # `tfmirror devpi` and a sync both bootstrap the index as soon as devpi answers.
    errors: list[Exception] = []
    for _ in range(8):
        config = DevpiConfig(url=devpi.url, index=f"r{uuid.uuid4().hex[:8]}/mirror")
        clients = [DevpiClient(config, DEVPI_TEST_PASSWORD) for _ in range(4)]
        start = threading.Barrier(len(clients))

        def boot(client: DevpiClient, start: threading.Barrier) -> None:
            start.wait()
            try:
                client.bootstrap("http://127.0.0.1:9/simple/")
            except DevpiError as exc:
                errors.append(exc)

        threads = [threading.Thread(target=boot, args=(c, start)) for c in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []


def test_a_model_swapped_in_by_prefetch_is_never_missing_for_a_reader(tmp_path: Path) -> None:
    # tensorflow_hub counts a non-empty cache folder as downloaded; an empty or missing
    # one makes it download, which on an air-gapped node fails.
    folder = tmp_path / "cache" / "0123abcd"
    folder.mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"v0")
    empty_seen = 0
    done = threading.Event()

    def reader() -> None:
        nonlocal empty_seen
        while not done.is_set():
            try:
                empty_seen += not os.listdir(folder)
            except FileNotFoundError:
                empty_seen += 1

    watcher = threading.Thread(target=reader)
    watcher.start()
    try:
        for i in range(300):
            staging = tmp_path / "cache" / f"staging-{i}"
            staging.mkdir()
            (staging / "saved_model.pb").write_bytes(f"v{i + 1}".encode())
            _swap_in(staging, folder)
    finally:
        done.set()
        watcher.join()
    assert empty_seen == 0
    assert (folder / "saved_model.pb").read_bytes() == b"v300"
