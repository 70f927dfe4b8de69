"""LocalStore's commit point is durable: the document and the rename are both fsynced."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mirror.core.errors import StoreError
from mirror.core.storage import LocalStore
from mirror.core.storage.local import listings


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


@pytest.mark.parametrize("key", ["../outside", "a/../../outside", "/etc/passwd", "a/\0b"])
def test_a_key_that_would_leave_the_store_is_refused(tmp_path: Path, key: str) -> None:
    store = LocalStore(tmp_path / "store")
    with pytest.raises(StoreError, match="escapes the store"):
        store.get(key)


def test_stamps_of_a_settled_folder_see_every_add_replace_and_delete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every folder counts as settled and is never re-read on a timer: only the folder's
    # own identity can tell a change, which is what a live index page relies on.
    monkeypatch.setattr(listings, "RACY_SECONDS", -1e9)
    monkeypatch.setattr(listings, "REREAD_SECONDS", 1e9)
    store = LocalStore(tmp_path / "store")
    store.put("m/pypi/a/x.json", b"1")
    first = store.stamps("m/pypi")
    assert list(first) == ["m/pypi/a/x.json"]
    assert store.stamps("m/pypi") == first  # kept, unchanged
    store.put("m/pypi/b/y.json", b"2")  # a new folder
    store.put("m/pypi/a/z.json", b"3")  # a new file in a kept folder
    assert sorted(store.stamps("m/pypi")) == [
        "m/pypi/a/x.json",
        "m/pypi/a/z.json",
        "m/pypi/b/y.json",
    ]
    store.put("m/pypi/a/x.json", b"1")  # the same bytes, written again
    assert store.stamps("m/pypi")["m/pypi/a/x.json"] != first["m/pypi/a/x.json"]
    store.delete("m/pypi/a/z.json")
    assert sorted(store.stamps("m/pypi")) == ["m/pypi/a/x.json", "m/pypi/b/y.json"]
    assert store.stamps("m/none") == {}
