"""One contract, every backend: LocalStore on disk and S3Store against a real moto_server."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import pytest

from mirror.core.config import StorageConfig
from mirror.core.errors import BlobNotFound, StoreError
from mirror.core.storage import (
    BlobStore,
    LocalStore,
    S3Store,
    blob_key,
    open_seekable,
    update_document,
)
from mirror.pypi.core_metadata import extract
from mirror.pypi.errors import MetadataError
from mirror.pypi.resolve import Wheel
from testkit.servers import MotoServer
from testkit.wheels import WheelSpec, build_wheel


def put_blob(store: BlobStore, data: bytes, chunk: int = 1 << 20) -> str:
    sha = hashlib.sha256(data).hexdigest()
    writer = store.new_blob()
    for i in range(0, len(data), chunk):
        writer.write(data[i : i + chunk])
    writer.publish(sha)
    return sha


def test_published_blob_reads_back_byte_identical(store: BlobStore) -> None:
    sha = put_blob(store, b"hello wheel")
    assert store.has_blob(sha)
    assert store.blob_size(sha) == 11
    with store.open_blob(sha) as reader:
        assert reader.read() == b"hello wheel"
    assert list(store.iter_blobs()) == [sha]


def test_large_blob_streams_in_parts(store: BlobStore) -> None:
    # 40 MiB: several multipart parts on S3, many chunks on disk.
    data = hashlib.sha256(b"seed").digest() * (40 * 1024 * 1024 // 32)
    sha = put_blob(store, data)
    digest = hashlib.sha256()
    with store.open_blob(sha) as reader:
        while chunk := reader.read(1 << 20):
            digest.update(chunk)
    assert digest.hexdigest() == sha
    assert store.blob_size(sha) == len(data)


def test_unpublished_blob_is_invisible_and_discard_leaves_nothing(store: BlobStore) -> None:
    data = b"x" * (20 * 1024 * 1024)
    sha = hashlib.sha256(data).hexdigest()
    writer = store.new_blob()
    writer.write(data)
    assert not store.has_blob(sha)
    writer.discard()
    assert not store.has_blob(sha)
    assert list(store.iter_blobs()) == []
    assert store.list("tmp") == []
    if isinstance(store, S3Store):
        uploads = store.client.list_multipart_uploads(Bucket=store.bucket)
        assert uploads.get("Uploads", []) == []


def test_missing_blob_raises_blob_not_found(store: BlobStore) -> None:
    sha = "0" * 64
    assert not store.has_blob(sha)
    assert store.blob_size(sha) is None
    with pytest.raises(BlobNotFound):
        store.open_blob(sha)


def test_documents_put_get_list_delete(store: BlobStore) -> None:
    assert store.get("manifests/pypi/a.json") is None
    store.put("manifests/pypi/a.json", b"{}")
    store.put("manifests/pypi/b.json", b"[]")
    store.put("manifests/hub/c.json", b"1")
    store.put("manifests/pypi/a.json", b'{"v": 2}')
    assert store.get("manifests/pypi/a.json") == b'{"v": 2}'
    assert store.list("manifests/pypi") == ["manifests/pypi/a.json", "manifests/pypi/b.json"]
    store.delete("manifests/pypi/a.json")
    assert store.list("manifests/pypi") == ["manifests/pypi/b.json"]
    assert store.list("nothing/here") == []


def test_a_documents_stamp_changes_when_it_is_written_over_or_made_again(
    store: BlobStore,
) -> None:
    store.put("snapshots/a.json", b'{"v": 1}')
    store.put("snapshots/b.json", b'{"v": 1}')
    first = store.stamps("snapshots")
    assert set(first) == {"snapshots/a.json", "snapshots/b.json"}
    assert store.stamps("snapshots") == first  # read again, unchanged
    store.put("snapshots/a.json", b'{"v": 2}')
    assert store.stamps("snapshots")["snapshots/a.json"] != first["snapshots/a.json"]
    store.delete("snapshots/b.json")
    time.sleep(0.01)  # past the disk clock's tick, as any delete-then-create is
    store.put("snapshots/b.json", b'{"v": 3}')
    assert store.stamps("snapshots")["snapshots/b.json"] != first["snapshots/b.json"]
    assert store.stamps("nothing") == {}


def test_delete_blob(store: BlobStore) -> None:
    sha = put_blob(store, b"short-lived")
    store.delete_blob(sha)
    assert not store.has_blob(sha)


def test_blob_keys_are_content_addresses() -> None:
    sha = hashlib.sha256(b"").hexdigest()
    assert blob_key(sha) == f"blobs/sha256/{sha[:2]}/{sha}"
    with pytest.raises(ValueError):
        blob_key("../../etc/passwd")


def test_s3_errors_become_store_errors(moto: MotoServer) -> None:
    store = S3Store(StorageConfig(backend="s3", bucket="no-such-bucket", endpoint_url=moto.url))
    with pytest.raises(StoreError, match=r"NoSuchBucket"):
        store.put("manifests/x.json", b"{}")


def test_local_keys_cannot_escape_the_store(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    with pytest.raises(StoreError, match="escapes"):
        store.put("../outside.json", b"{}")


def test_a_local_store_under_a_relative_or_symlinked_root_lists_its_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    monkeypatch.chdir(tmp_path)
    for root in (Path("store"), tmp_path / "link" / "store"):
        store = LocalStore(root)
        store.put("manifests/pypi/a.json", b"{}")
        assert store.list("manifests/pypi/") == ["manifests/pypi/a.json"]


def test_blob_mtime_and_move_to_quarantine(store: BlobStore) -> None:
    import time

    sha = put_blob(store, b"rotten bytes")
    mtime = store.blob_mtime(sha)
    assert mtime is not None and abs(mtime - time.time()) < 120
    store.move_blob(sha, f"quarantine/sha256/{sha}-1")
    assert not store.has_blob(sha)
    assert store.get(f"quarantine/sha256/{sha}-1") == b"rotten bytes"
    assert store.blob_mtime(sha) is None
    with pytest.raises(BlobNotFound):
        store.move_blob(sha, "quarantine/again")


def test_open_range_reads_exactly_the_window(store: BlobStore) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    sha = put_blob(store, data)
    with store.open_range(sha, 1000, 5000) as reader:
        got = b""
        while chunk := reader.read(777):
            got += chunk
    assert got == data[1000:6000]


def test_abandoned_writes_are_listed_and_can_be_dropped(store: BlobStore) -> None:
    import time

    crashed = store.new_blob()
    crashed.write(b"x" * (20 * 1024 * 1024))  # on S3: a multipart upload in flight
    temporaries = list(store.iter_temporaries())
    assert len(temporaries) == 1
    ident, started = temporaries[0]
    if isinstance(store, LocalStore):  # moto reports a fixed 2010 date for every upload
        assert abs(started - time.time()) < 120
    store.drop_temporary(ident)
    assert list(store.iter_temporaries()) == []


def test_conditional_writes_lose_no_update(store: BlobStore) -> None:
    assert store.put_if("state/x.json", b"1", None)
    assert not store.put_if("state/x.json", b"2", None), "created twice"
    data, version = store.get_versioned("state/x.json") or (b"", "")
    assert data == b"1"
    assert store.put_if("state/x.json", b"2", version)
    assert not store.put_if("state/x.json", b"3", version), "a stale version won"
    assert store.get("state/x.json") == b"2"

    # Eight writers adding one each, at once: every increment lands.
    store.put("state/n", b"0")

    def add_one() -> None:
        update_document(store, "state/n", lambda raw: str(int(raw or b"0") + 1).encode())

    threads = [threading.Thread(target=add_one) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.get("state/n") == b"8"


def test_touch_restamps_a_blob_and_says_when_it_is_gone(store: BlobStore) -> None:
    data = b"old blob"
    sha = hashlib.sha256(data).hexdigest()
    writer = store.new_blob()
    writer.write(data)
    writer.publish(sha)
    before = store.blob_mtime(sha) or 0
    time.sleep(1.1)  # S3 times have one-second resolution
    assert store.touch_blob(sha)
    assert (store.blob_mtime(sha) or 0) > before
    assert store.get_versioned("no/such.json") is None
    store.delete_blob(sha)
    assert not store.touch_blob(sha)


def test_a_wheels_metadata_is_read_without_reading_the_wheel(
    store: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = WheelSpec("big", "1.0", noise=8_000_000, requires_python=">=3.9")
    data = build_wheel(spec)
    sha = put_blob(store, data)
    ranged = []
    open_range = store.open_range
    monkeypatch.setattr(
        store, "open_range", lambda s, start, n: ranged.append(n) or open_range(s, start, n)
    )
    with open_seekable(store, sha) as blob:
        blob.seek(-4, 2)
        assert blob.read() == data[-4:]
    wheel = Wheel("big", "1.0", spec.filename, "", sha, len(data))
    got = extract(store, wheel, declared=hashlib.sha256(spec.metadata()).hexdigest())
    assert got.requires_python == ">=3.9"
    if store.local_path(sha) is None:  # S3: a few ranged GETs, not the 8 MB
        assert 0 < sum(ranged) < 1_000_000, ranged
    with store.open_blob(got.sha256) as reader:
        assert reader.read() == spec.metadata()
    # An upstream that declares other METADATA than the wheel holds is refused.
    with pytest.raises(MetadataError, match=r"declares core-metadata sha256 0+, the wheel"):
        extract(store, wheel, declared="0" * 64)
    not_a_wheel = Wheel("big", "1.0", spec.filename, "", put_blob(store, b"PK junk"), 7)
    with pytest.raises(MetadataError, match="not a readable wheel"):
        extract(store, not_a_wheel)
