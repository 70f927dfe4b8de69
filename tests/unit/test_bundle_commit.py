"""A bundle import's commit is all or nothing across a crash: before the journal the
store is as it was; after it, `recover` (run by the next import and by `up`) finishes
it, and devpi's offer is redone until it succeeded. The crash is an exception raised
from inside the store at a chosen write; the real kill -9 is in test_bundle."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bundle.contents import read_manifests
from bundle.errors import BundleError
from bundle.export import export
from bundle.importer import (
    IMPORTED,
    committing,
    import_bundle,
    last_import,
    mark_offered,
    needs_offer,
    pending,
    recover,
)
from bundle.runs import export_recorded, import_recorded, resume
from hub_cache.models import ModelManifest, load_models, model_key, save_model
from mirror.core.journal import OUTER, Journal, as_lines, verify_outer
from mirror.core.runs import Failure
from mirror.core.storage import HashingWriter, LocalStore, blob_key
from tests.support.runner import runner_over
from verify.gc import collect


class Crash(BaseException):
    """The process dying: nothing after it runs, no handler catches it."""


class CrashingStore(LocalStore):
    """Dies at the n-th document written under `prefix`."""

    def __init__(self, root: Path, prefix: str, n: int) -> None:
        super().__init__(root)
        self.prefix, self.left = prefix, n

    def _count(self, key: str) -> None:
        if key.startswith(self.prefix):
            self.left -= 1
            if self.left == 0:
                raise Crash(key)

    def put(self, key: str, data: bytes) -> None:
        self._count(key)
        super().put(key, data)

    def put_if(self, key: str, data: bytes, version: str | None) -> bool:
        self._count(key)
        return super().put_if(key, data, version)


def add_model(store: LocalStore, path: str, data: bytes) -> None:
    writer = HashingWriter(store.new_blob())
    writer.write(data)
    sha = writer.publish()
    save_model(store, ModelManifest(path, path, sha, len(data), "2026-11-23", "test"))


@pytest.fixture
def bundles(tmp_path: Path) -> tuple[Path, Path, Ed25519PrivateKey, dict[str, bytes]]:
    """Bundle 1 brings models a and b; bundle 2 changes a, drops b and adds c."""
    outer = LocalStore(tmp_path / "outer")
    key = Ed25519PrivateKey.generate()
    add_model(outer, "g/a/1", os.urandom(3000))
    add_model(outer, "g/b/1", os.urandom(3000))
    export(outer, key, tmp_path / "b1", full=True)
    add_model(outer, "g/a/1", os.urandom(3000))
    outer.delete(model_key("g/b/1"))
    add_model(outer, "g/c/1", os.urandom(3000))
    export(outer, key, tmp_path / "b2")
    return tmp_path / "b1", tmp_path / "b2", key, read_manifests(outer)


def inner_after_first(root: Path, b1: Path, key: Ed25519PrivateKey) -> tuple[dict[str, bytes], str]:
    """An inner mirror that imported bundle 1 and had devpi offer it: its manifests and
    the id it last imported."""
    store = LocalStore(root)
    import_bundle(store, b1, key.public_key())
    mark_offered(store)
    first = last_import(store)
    assert first is not None
    return read_manifests(store), first


def crashed_import(
    root: Path, bundle: Path, key: Ed25519PrivateKey, key_prefix: str, after: int
) -> LocalStore:
    """The inner store at `root` after an import of `bundle` died at the `after`-th
    write under `key_prefix`."""
    with pytest.raises(Crash):
        import_bundle(CrashingStore(root, key_prefix, after), bundle, key.public_key())
    return LocalStore(root)


def test_a_crash_inside_the_commit_is_finished_by_recover(
    bundles: tuple[Path, Path, Ed25519PrivateKey, dict[str, bytes]], tmp_path: Path
) -> None:
    b1, b2, key, outer_manifests = bundles
    root = tmp_path / "inner"
    before, first = inner_after_first(root, b1, key)

    # Dies after the journal and the first manifest: the store is a mix for now...
    inner = crashed_import(root, b2, key, "manifests/", 2)
    assert read_manifests(inner) not in (before, outer_manifests)
    assert committing(inner) and pending(inner)
    assert last_import(inner) == first  # the import is not recorded as done

    # ...until the next import or `up` finishes it, and has devpi offer the files.
    offers: list[int] = []

    def offer() -> tuple[int, list[Failure]]:
        offers.append(1)
        return 3, []

    finished, failures = resume(inner, offer)
    assert finished is not None and failures == []
    assert finished == last_import(inner)  # the bundle it finished, not the one before
    assert read_manifests(inner) == outer_manifests
    assert not committing(inner) and not pending(inner) and not needs_offer(inner)
    assert last_import(inner) not in (None, first)
    assert offers == [1]
    assert resume(inner, offer) == (None, []) and offers == [1]  # nothing left to do


def test_a_crash_before_the_journal_leaves_the_store_as_it_was(
    bundles: tuple[Path, Path, Ed25519PrivateKey, dict[str, bytes]], tmp_path: Path
) -> None:
    b1, b2, key, outer_manifests = bundles
    root = tmp_path / "inner"
    before, first = inner_after_first(root, b1, key)
    inner = LocalStore(root)

    with pytest.raises(Crash):
        import_bundle(CrashingStore(root, IMPORTED, 1), b2, key.public_key())
    assert read_manifests(inner) == before and last_import(inner) == first
    assert not pending(inner)
    # The blobs it copied are whole (published only once verified) and the retry works.
    for data in read_manifests(inner).values():
        sha = ModelManifest.from_bytes(data).sha256
        with inner.open_blob(sha) as blob:
            assert hashlib.sha256(blob.read()).hexdigest() == sha
    import_bundle(inner, b2, key.public_key())
    assert read_manifests(inner) == outer_manifests


def test_refusals_and_crashes_of_bundle_runs_are_failed_run_records(
    bundles: tuple[Path, Path, Ed25519PrivateKey, dict[str, bytes]], tmp_path: Path
) -> None:
    b1, _, key, _ = bundles
    store = LocalStore(tmp_path / "inner")
    other = Ed25519PrivateKey.generate().public_key()
    with pytest.raises(BundleError):
        import_recorded(store, b1, other, lambda: (0, []))
    refused = json.loads(store.get("runs/bundle/latest.json") or b"{}")
    assert refused["outcome"] == "failed" and refused["trigger"] == "import"
    assert "does not verify with the trusted key" in refused["errors"][0]["reason"]
    # Not a refusal but an error of its own (export into a file): a crash, with its log.
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(NotADirectoryError):
        export_recorded(store, key, tmp_path / "a-file", None, True, None)
    crashed = json.loads(store.get("runs/bundle/latest.json") or b"{}")
    assert crashed["outcome"] == "failed" and crashed["trigger"] == "export"
    assert "NotADirectoryError" in crashed["errors"][0]["reason"] and crashed["log"]


class GcWhileImporting(LocalStore):
    """gc runs (another lease, another process) right after the import has looked at a
    blob: the worst time, between "it is here" and the commit that lists it."""

    def has_blob(self, sha256: str) -> bool:
        found = super().has_blob(sha256)
        collect(self, grace_seconds=24 * 3600, keeping_out=runner_over(self).keeping_out)
        return found

    def touch_blob(self, sha256: str) -> bool:
        touched = super().touch_blob(sha256)
        collect(self, grace_seconds=24 * 3600, keeping_out=runner_over(self).keeping_out)
        return touched


def test_gc_during_an_import_spares_every_blob_the_import_commits(
    bundles: tuple[Path, Path, Ed25519PrivateKey, dict[str, bytes]], tmp_path: Path
) -> None:
    b1, _, key, _ = bundles
    inner = LocalStore(tmp_path / "inner")
    import_bundle(inner, b1, key.public_key())
    # The models leave (an operator removed them, say): their blobs stay, unreferenced
    # and older than the grace period, until gc's next run.
    for manifest in inner.list("manifests"):
        inner.delete(manifest)
    inner.delete(IMPORTED)
    two_days_ago = time.time() - 2 * 86400
    for sha in inner.iter_blobs():
        os.utime(inner.root / blob_key(sha), (two_days_ago, two_days_ago))

    racing = GcWhileImporting(tmp_path / "inner")
    import_bundle(racing, b1, key.public_key())

    listed = [m.sha256 for m in load_models(racing)]
    assert len(listed) == 2
    assert [sha for sha in listed if not racing.has_blob(sha)] == []


def test_an_older_bundle_of_any_kind_is_refused_unless_a_rollback_is_asked_for(
    bundles: tuple[Path, Path, Ed25519PrivateKey, dict[str, bytes]], tmp_path: Path
) -> None:
    b1, b2, key, outer_manifests = bundles
    inner = LocalStore(tmp_path / "inner")
    import_bundle(inner, b1, key.public_key())
    first = read_manifests(inner)
    import_bundle(inner, b2, key.public_key())
    assert read_manifests(inner) == outer_manifests

    # Replaying the first bundle (a full one) would bring model b back and revert a.
    with pytest.raises(BundleError, match="roll this mirror back"):
        import_bundle(inner, b1, key.public_key())
    assert read_manifests(inner) == outer_manifests

    again = import_bundle(inner, b2, key.public_key())  # the last one: a no-op
    assert again.again and read_manifests(inner) == outer_manifests

    import_bundle(inner, b1, key.public_key(), allow_rollback=True)  # on purpose
    assert read_manifests(inner) == first
    # A newer full bundle after that is taken as usual.
    outer = LocalStore(tmp_path / "outer")
    export(outer, key, tmp_path / "b3", full=True)
    import_bundle(inner, tmp_path / "b3", key.public_key())
    assert read_manifests(inner) == outer_manifests


def test_a_model_imported_by_hand_on_the_inner_side_stays_through_imports(
    bundles: tuple[Path, Path, Ed25519PrivateKey, dict[str, bytes]], tmp_path: Path
) -> None:
    b1, b2, key, outer_manifests = bundles
    inner = LocalStore(tmp_path / "inner")
    import_bundle(inner, b1, key.public_key())
    add_model(inner, "local/own/1", os.urandom(3000))  # `tfmirror hub import` in here
    own = inner.get(model_key("local/own/1"))

    import_bundle(inner, b2, key.public_key())  # drops model b, which a bundle brought

    held = read_manifests(inner)
    assert held.pop(model_key("local/own/1")) == own
    assert held == outer_manifests
    assert model_key("g/b/1") not in held
    collect(inner, grace_seconds=0, keeping_out=runner_over(inner).keeping_out)
    (mine,) = [m for m in load_models(inner) if m.path == "local/own/1"]
    assert inner.has_blob(mine.sha256)


def test_a_blob_the_inner_gc_removed_travels_again_when_a_manifest_lists_it_again(
    tmp_path: Path,
) -> None:
    outer, inner = LocalStore(tmp_path / "outer"), LocalStore(tmp_path / "inner")
    key = Ed25519PrivateKey.generate()
    model_b = os.urandom(3000)
    add_model(outer, "g/a/1", os.urandom(3000))
    add_model(outer, "g/b/1", model_b)
    export(outer, key, tmp_path / "b1", full=True)
    import_bundle(inner, tmp_path / "b1", key.public_key())
    outer.delete(model_key("g/b/1"))  # b leaves upstream...
    export(outer, key, tmp_path / "b2")
    import_bundle(inner, tmp_path / "b2", key.public_key())
    # ...and the inner gc frees its blob
    collect(inner, grace_seconds=0, keeping_out=runner_over(inner).keeping_out)
    sha_b = hashlib.sha256(model_b).hexdigest()
    assert not inner.has_blob(sha_b)
    add_model(outer, "g/b/1", model_b)  # b comes back, the same bytes
    export(outer, key, tmp_path / "b3")

    import_bundle(inner, tmp_path / "b3", key.public_key())

    assert read_manifests(inner) == read_manifests(outer)
    assert inner.has_blob(sha_b)


class ImportMeanwhile(LocalStore):
    """Another import (another replica, or this one's lease taken while it was paused)
    commits a newer bundle while this import is still checking its blobs."""

    def __init__(self, root: Path, newer: Path, key: Ed25519PrivateKey) -> None:
        super().__init__(root)
        self.newer, self.key = newer, key

    def touch_blob(self, sha256: str) -> bool:
        if self.newer.exists():
            import_bundle(LocalStore(self.root), self.newer, self.key.public_key())
            self.newer = self.newer / "done"  # once
        return super().touch_blob(sha256)


def test_an_import_another_import_overtook_commits_nothing(
    bundles: tuple[Path, Path, Ed25519PrivateKey, dict[str, bytes]], tmp_path: Path
) -> None:
    # Before, the slower import wrote its journal over the newer one's commit: model d,
    # which only the newer bundle has, was deleted and a reverted to bundle 2's.
    b1, b2, key, _ = bundles
    outer = LocalStore(tmp_path / "outer")
    add_model(outer, "g/d/1", os.urandom(3000))
    export(outer, key, tmp_path / "b3", full=True)
    newest = read_manifests(outer)
    root = tmp_path / "inner"
    inner_after_first(root, b1, key)

    with pytest.raises(BundleError, match="another import committed"):
        import_bundle(ImportMeanwhile(root, tmp_path / "b3", key), b2, key.public_key())
    inner = LocalStore(root)
    assert read_manifests(inner) == newest and not committing(inner)
    assert "g/d/1" in {m.path for m in load_models(inner)}


def test_a_commit_the_release_before_left_half_done_is_finished_after_the_upgrade(
    bundles: tuple[Path, Path, Ed25519PrivateKey, dict[str, bytes]], tmp_path: Path
) -> None:
    # That release's commit point was a journal of its own, state/bundle/committing.json.
    b1, _, key, _ = bundles
    inner = LocalStore(tmp_path / "inner")
    import_bundle(inner, b1, key.public_key())
    brought = read_manifests(inner)
    (gone, *_) = sorted(brought)
    journal = {
        "id": "20261127T000000Z-old",
        "follows": None,
        "created": "2026-11-27T00:00:00+00:00",
        "write": {},
        "delete": [gone],
        "brought": sorted(set(brought) - {gone}),
    }
    inner.put("state/bundle/committing.json", json.dumps(journal).encode())
    assert committing(inner) and pending(inner)
    # Its journal does not list the blobs it needs: gc deletes nothing until it is done.
    assert collect(inner, grace_seconds=0, keeping_out=runner_over(inner).keeping_out).postponed

    assert recover(inner) == "20261127T000000Z-old"
    assert set(read_manifests(inner)) == set(brought) - {gone}
    assert last_import(inner) == "20261127T000000Z-old" and needs_offer(inner)
    assert not committing(inner) and inner.get("state/bundle/committing.json") is None


def test_a_crash_inside_the_very_first_imports_commit_is_finished_too(
    bundles: tuple[Path, Path, Ed25519PrivateKey, dict[str, bytes]], tmp_path: Path
) -> None:
    b1, _, key, _ = bundles
    root = tmp_path / "inner"
    inner = crashed_import(root, b1, key, "manifests/", 2)
    assert committing(inner) and last_import(inner) is None
    finished = recover(inner)
    assert finished is not None and finished == last_import(inner)
    assert len(read_manifests(inner)) == 2 and not committing(inner)


def age_blobs(store: LocalStore, days: float) -> None:
    then = time.time() - days * 86400
    for sha in store.iter_blobs():
        os.utime(store.root / blob_key(sha), (then, then))


def listed_but_missing(store: LocalStore) -> list[str]:
    listed = {m.sha256 for m in load_models(store)}
    return sorted(sha for sha in listed if not store.has_blob(sha))


def test_gc_after_an_import_killed_past_its_commit_point_keeps_the_imports_blobs(
    bundles: tuple[Path, Path, Ed25519PrivateKey, dict[str, bytes]], tmp_path: Path
) -> None:
    # Killed at its first manifest write, just after the journal: the blobs bundle 2
    # brought are listed by no committed manifest yet. Before, gc (days later) deleted
    # them, recover committed manifests naming blobs that were gone, and the next
    # incremental bundle was refused: "refer to 2 blobs this mirror lacks".
    b1, b2, key, _ = bundles
    root = tmp_path / "inner"
    inner_after_first(root, b1, key)
    inner = crashed_import(root, b2, key, "manifests/", 1)
    assert committing(inner)
    age_blobs(inner, 3)  # a long weekend later, gc runs
    collect(inner, grace_seconds=24 * 3600, keeping_out=runner_over(inner).keeping_out)

    outer = LocalStore(tmp_path / "outer")
    add_model(outer, "g/d/1", os.urandom(3000))
    export(outer, key, tmp_path / "b3")  # follows bundle 2: carries d's blob only
    import_bundle(inner, tmp_path / "b3", key.public_key())  # finishes bundle 2 first

    assert read_manifests(inner) == read_manifests(outer)
    assert listed_but_missing(inner) == []


def test_recovery_writes_no_manifest_whose_blob_is_missing_and_a_reimport_repairs_it(
    bundles: tuple[Path, Path, Ed25519PrivateKey, dict[str, bytes]], tmp_path: Path
) -> None:
    # A blob the interrupted import brought went missing anyway (removed by hand, a gc
    # of the release before): committing its manifests would serve a 404.
    b1, b2, key, outer_manifests = bundles
    root = tmp_path / "inner"
    before, first = inner_after_first(root, b1, key)
    inner = crashed_import(root, b2, key, "manifests/", 1)
    brought = {ModelManifest.from_bytes(d).sha256 for d in outer_manifests.values()}
    (gone, *_) = sorted(brought - {ModelManifest.from_bytes(d).sha256 for d in before.values()})
    inner.delete_blob(gone)

    with pytest.raises(BundleError, match=r"import bundle \S+ again"):
        recover(inner)
    finished, failures = resume(inner, lambda: (0, []))
    assert finished is None and "again" in failures[0].reason  # what `up` prints
    assert read_manifests(inner) == before and last_import(inner) == first
    assert listed_but_missing(inner) == []

    # The same bundle again brings the blob back and finishes the import.
    done = import_bundle(inner, b2, key.public_key())
    assert not done.again and done.new_blobs >= 1
    assert read_manifests(inner) == outer_manifests and not committing(inner)
    assert listed_but_missing(inner) == []


def journal_items(bundle: Path) -> list[tuple[str, str]]:
    index = json.loads((bundle / "bundle.json").read_text())
    return [(i["kind"], i["name"]) for i in index["items"] if i["kind"].startswith("journal")]


def test_an_incremental_bundle_carries_only_the_journal_entries_the_inner_side_lacks(
    tmp_path: Path,
) -> None:
    outer, inner = LocalStore(tmp_path / "outer"), LocalStore(tmp_path / "inner")
    key = Ed25519PrivateKey.generate()
    journal = Journal(outer)
    for n in range(3):
        journal.record([{"event": "e", "n": n}], "ops")
    export(outer, key, tmp_path / "b1", full=True)
    assert journal_items(tmp_path / "b1") == [("journal", OUTER)]
    import_bundle(inner, tmp_path / "b1", key.public_key())
    for n in range(3, 5):
        journal.record([{"event": "e", "n": n}], "ops")
    export(outer, key, tmp_path / "b2")
    # Entries 3 and 4 only: the first names entry 2, which the inner side holds.
    assert journal_items(tmp_path / "b2") == [("journal_tail", "3")]
    index = json.loads((tmp_path / "b2" / "bundle.json").read_text())
    (tail,) = [i for i in index["items"] if i["kind"] == "journal_tail"]
    assert tail["size"] == len(b"".join(e.raw + b"\n" for e in list(journal.entries())[3:]))
    import_bundle(inner, tmp_path / "b2", key.public_key())
    assert inner.get(OUTER) == as_lines(journal)
    assert verify_outer(inner) == (5, None)

    # An inner side that does not hold what the tail follows refuses the bundle whole.
    other = LocalStore(tmp_path / "other")
    import_bundle(other, tmp_path / "b1", key.public_key())
    other.put(OUTER, b"".join(e.raw + b"\n" for e in list(journal.entries())[:2]))
    before = read_manifests(other)
    with pytest.raises(BundleError, match="from entry 3, but this mirror holds 2 of its"):
        import_bundle(other, tmp_path / "b2", key.public_key())
    assert read_manifests(other) == before and last_import(other) != "b2"


def test_an_outer_journal_rewritten_since_the_last_bundle_travels_whole(
    tmp_path: Path,
) -> None:
    outer, inner = LocalStore(tmp_path / "outer"), LocalStore(tmp_path / "inner")
    key = Ed25519PrivateKey.generate()
    journal = Journal(outer)
    for n in range(2):
        journal.record([{"event": "e", "n": n}], "ops")
    export(outer, key, tmp_path / "b1", full=True)
    import_bundle(inner, tmp_path / "b1", key.public_key())
    last = "journal/entries/000000000001.json"
    raw = outer.get(last)
    assert raw is not None
    outer.put(last, raw.replace(b'"n": 1', b'"n": 7').replace(b'"n":1', b'"n":7'))
    assert outer.get(last) != raw
    journal.record([{"event": "e", "n": 2}], "ops")
    export(outer, key, tmp_path / "b2")
    # Its last carried entry is no longer as it was: whole, so the inner side sees it.
    assert journal_items(tmp_path / "b2") == [("journal", OUTER)]
    import_bundle(inner, tmp_path / "b2", key.public_key())
    count, broken = verify_outer(inner) or (0, None)
    assert count == 3 and broken is not None and broken.seq == 1
