"""LocalStore's commit point is durable: the document and the rename are both fsynced."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mirror.core.storage import LocalStore


def test_put_fsyncs_the_document_and_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalStore(tmp_path / "store")
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        mode = os.fstat(fd).st_mode
        synced.append("folder" if stat.S_ISDIR(mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    store.put("manifests/pypi/t.json", b"{}")
    assert synced == ["file", "folder"]
    assert store.get("manifests/pypi/t.json") == b"{}"
    synced.clear()
    writer = store.new_blob()
    writer.write(b"x")
    writer.publish("2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881")
    assert synced == ["file", "folder"]
