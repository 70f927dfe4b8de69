"""The journal: append-only and hash-chained, on disk and on a real S3 endpoint (moto);
what a sync changes lands in it, and `tfmirror history --verify` finds a flipped byte."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mirror.core import journal as journal_module
from mirror.core.config import DevpiConfig
from mirror.core.journal import Journal
from mirror.core.storage import BlobStore, LocalStore, open_store
from sync_jobs.page import render_page
from sync_jobs.status import collect_status
from testkit.mirror_env import make_config
from testkit.upstream import Upstream
from testkit.wheels import WheelSpec
from tests.functional.test_pypi_sync import sync
from tests.support.runner import runner_over
from tfmirror.app import create_app


def tamper(store: BlobStore, seq: int, old: bytes, new: bytes) -> bytes:
    """Edit one entry's document in place; returns its bytes before."""
    key = f"journal/entries/{seq:012d}.json"
    raw = store.get(key)
    assert raw is not None and old in raw
    store.put(key, raw.replace(old, new))
    return raw


def change(project: str, version: str, event: str = "file added") -> dict[str, str]:
    return {"event": event, "project": project, "version": version}


def test_each_entry_names_the_one_before_and_history_reads_them_back(store: BlobStore) -> None:
    journal = Journal(store)
    assert journal.record([], "nobody") is None  # nothing changed: nothing written
    first = journal.record([change("alpha", "1.0")], "ops@host", "first sync")
    second = journal.record([change("beta", "2.0")], "scheduler@host")
    third = journal.record(
        [change("alpha", "1.0", "file removed"), change("alpha", "1.1")], "ops@host"
    )
    assert first and second and third
    assert [json.loads(e.raw)["prev"] for e in (first, second, third)] == [
        journal_module.GENESIS,
        first.sha256,
        second.sha256,
    ]
    assert journal.verify() is None
    assert [e["seq"] for e in journal.history(project="alpha")] == [2, 0]
    assert [e["seq"] for e in journal.recent(2)] == [2, 1]
    assert journal.history(project="gamma") == []
    assert journal.history(since="2999-01-01") == []


def test_a_flipped_byte_a_removed_entry_and_a_rewritten_one_are_each_named(
    store: BlobStore,
) -> None:
    journal = Journal(store)
    for n in range(4):
        journal.record([change("alpha", f"1.{n}")], "ops@host")
    key = "journal/entries/000000000001.json"
    original = tamper(store, 1, b"1.1", b"6.6")  # one byte: the version
    broken = journal.verify()
    assert broken is not None and broken.seq == 2
    assert "does not name entry 1 as it is now (that entry was changed" in str(broken)
    store.put(key, original)
    assert journal.verify() is None
    # The newest entry, which no link follows yet.
    last = tamper(store, 3, b"ops@host", b"xyz@host")
    broken = journal.verify()
    assert broken is not None and broken.seq == 3 and "head" in broken.why
    store.put("journal/entries/000000000003.json", last)

    # Rewritten with its link intact, but a later link then fails; a wrong number too.
    doc = json.loads(original)
    doc["seq"] = 7
    store.put(key, json.dumps(doc).encode())
    broken = journal.verify()
    assert broken is not None and broken.seq == 1 and "sequence number 7" in broken.why


def test_a_removed_entry_and_a_removed_newest_one_are_named(
    store: BlobStore, tmp_path: Path
) -> None:
    """A deleted entry leaves no link to break: the entries after it (and every append
    after them) are what is missing from the walk, and the head names the newest."""
    journal = Journal(store)
    for n in range(10):
        journal.record([change("alpha", f"1.{n}")], "ops@host")
    fifth = "journal/entries/000000000005.json"
    removed = store.get(fifth)
    assert removed is not None
    store.delete(fifth)
    journal.record([change("alpha", "2.0")], "ops@host")  # lands after the gap
    broken = journal.verify()
    assert broken is not None and broken.seq == 5 and "missing" in broken.why
    assert "entries 6 to 10 follow it" in broken.why
    store.put(fifth, removed)
    assert journal.verify() is None

    # The newest entry removed: no link follows it, but the head names it.
    store.delete("journal/entries/000000000010.json")
    broken = journal.verify()
    assert broken is not None and broken.seq == 10 and "head" in broken.why
    if isinstance(store, LocalStore):  # `history --verify` says so and fails
        path = tmp_path / "history.toml"
        path.write_text(f'[storage]\npath = "{store.root}"\n')
        cli = [sys.executable, "-m", "tfmirror.cli", "--config", str(path), "history"]
        bad = subprocess.run([*cli, "--verify"], capture_output=True, text=True)
        assert bad.returncode == 1 and "BROKEN at journal entry 10" in bad.stdout


def test_an_outer_journal_must_extend_the_one_held(store: BlobStore, tmp_path: Path) -> None:
    """What bundles carried, in turn: the outer journal kept by a release before this
    one, a longer one, one cut short, one rewritten and then grown."""
    outer = Journal(LocalStore(tmp_path / "outer"))
    for n in range(3):
        outer.record([change("alpha", f"1.{n}")], "ops@outer")
    three = journal_module.as_lines(outer)
    store.put(journal_module.OUTER, three)  # as the release before kept it: no record
    outer.record([change("alpha", "1.3")], "ops@outer")
    assert journal_module.keep_outer(store, journal_module.as_lines(outer))
    assert journal_module.verify_outer(store) == (4, None)

    assert not journal_module.keep_outer(store, three)  # entry 3 is gone
    count, broken = journal_module.verify_outer(store) or (0, None)
    assert count == 3 and broken is not None and broken.seq == 3 and "missing" in broken.why

    rewritten = b"".join(three.splitlines(keepends=True)[:2])
    other = Journal(LocalStore(tmp_path / "other"))
    for line in rewritten.splitlines():
        other.store.put(f"journal/entries/{json.loads(line)['seq']:012d}.json", line)
    for n in range(3):
        other.record([change("beta", f"2.{n}")], "ops@outer")
    assert not journal_module.keep_outer(store, journal_module.as_lines(other))
    _, broken = journal_module.verify_outer(store) or (0, None)
    assert broken is not None and broken.seq == 3 and "differs" in broken.why


def _append(path: str, writer: int, count: int) -> None:
    journal = Journal(LocalStore(Path(path)))
    for n in range(count):
        journal.record([change(f"w{writer}", str(n))], f"writer{writer}")


def test_concurrent_writers_never_fork_the_chain(store: BlobStore, tmp_path: Path) -> None:
    """Several processes (on disk) or threads (on S3) append at once: every entry lands
    once, in one unbroken chain."""
    if isinstance(store, LocalStore):
        context = multiprocessing.get_context("fork")
        procs = [context.Process(target=_append, args=(str(store.root), w, 15)) for w in range(4)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(60)
            assert proc.exitcode == 0
    else:

        def append(writer: int) -> None:
            journal = Journal(store)
            for n in range(15):
                journal.record([change(f"w{writer}", str(n))], f"writer{writer}")

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(append, range(4)))
    journal = Journal(store)
    entries = list(journal.entries())
    assert [e.seq for e in entries] == list(range(60))
    written = sorted((c["project"], c["version"]) for e in entries for c in e.doc["changes"])
    assert written == sorted((f"w{w}", str(n)) for w in range(4) for n in range(15))
    assert journal.verify() is None


def test_sealed_segments_are_read_and_checked_against_each_entry(
    store: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_module, "SEGMENT", 5)
    journal = Journal(store)
    for n in range(12):
        journal.record([change("alpha", f"1.{n}")], "ops@host")
    assert store.list("journal/segments") == [
        "journal/segments/000000000000.jsonl",
        "journal/segments/000000000005.jsonl",
    ]
    assert [e.seq for e in journal.entries()] == list(range(12))
    assert [e["seq"] for e in journal.recent(3)] == [11, 10, 9]
    assert journal.verify() is None
    # An entry's own document edited after it was sealed: history reads the segment,
    # verify compares the two.
    tamper(store, 3, b"1.3", b"9.3")
    broken = journal.verify()
    assert broken is not None and broken.seq == 3 and "sealed segment" in broken.why


def test_a_sync_journals_what_it_added_and_removed_and_history_shows_it(
    upstream: Upstream, devpi: DevpiConfig, tmp_path: Path
) -> None:
    upstream.add(WheelSpec("alpha", "1.0"))
    config = make_config(tmp_path, upstream.index_url, devpi, ["alpha"])
    assert sync(config)[0].ok
    upstream.add(WheelSpec("alpha", "1.1"))
    assert sync(config)[0].ok
    report, store = sync(config)  # a no-op: no entry
    assert report.ok

    entries = Journal(store).history(project="alpha")
    assert len(entries) == 2
    newest = entries[0]
    assert newest["reason"] == "pypi sync" and "@" in newest["actor"]
    assert {(c["event"], c["version"]) for c in newest["changes"]} == {
        ("file added", "1.1"),
        ("file removed", "1.0"),
    }
    status = collect_status(config, store, config.web.base_url)
    assert "file added: <code>alpha 1.1</code>" in render_page(status)
    answer = create_app(config).test_client().get("/api/history?project=alpha&limit=1")
    assert answer.status_code == 200 and answer.get_json()[0]["seq"] == newest["seq"]

    path = tmp_path / "history.toml"  # the journal needs the store alone
    path.write_text(f'[storage]\npath = "{config.storage.path}"\n')
    cli = [sys.executable, "-m", "tfmirror.cli", "--config", str(path), "history"]
    shown = subprocess.run([*cli, "--project", "alpha"], capture_output=True, text=True)
    assert shown.returncode == 0 and "file removed: alpha 1.0" in shown.stdout
    ok = subprocess.run([*cli, "--verify"], capture_output=True, text=True)
    assert ok.returncode == 0 and "2 entries, every link matches" in ok.stdout

    tamper(store, 0, b"alpha", b"alphb")
    bad = subprocess.run([*cli, "--verify"], capture_output=True, text=True)
    assert bad.returncode == 1 and "BROKEN at journal entry 1" in bad.stdout


def test_models_published_replaced_and_aliased_and_gcs_deletions_are_journaled(
    tmp_path: Path,
) -> None:
    from hub_cache.hub_sync import HubSync
    from mirror.core.config import parse_config
    from testkit.servers import free_port
    from tests.support.archives import FAKE_MODEL, tar_bytes
    from tests.support.hub_upstream import HubUpstream
    from verify.jobs import run_gc

    with HubUpstream() as hub_up:
        handle = hub_up.add("google/m/1", tar_bytes(FAKE_MODEL))
        alias = "https://tfhub.dev/google/old-m/1"
        config = parse_config(
            {
                "storage": {"path": "store"},
                "web": {"port": free_port()},
                "hub": {
                    "models": [{"handle": handle, "aliases": [alias]}],
                    "timeout": 5,
                    "retries": 1,
                },
            },
            tmp_path,
        )
        store = open_store(config.storage)
        assert HubSync(config, store).run().ok
        first = open_store(config.storage).get("manifests/hub/google/m/1.json")
        assert HubSync(config, store).run().ok  # unchanged: no entry
        hub_up.add("google/m/1", tar_bytes({**FAKE_MODEL, "assets/extra.txt": b"v2"}))
        assert (
            HubSync(
                config,
                store,
            )
            .run()
            .ok
        )

    journal = Journal(store)
    entries = journal.history(model=handle)
    assert [[c["event"] for c in e["changes"]] for e in entries] == [
        ["model replaced", "model aliased"],
        ["model published", "model aliased"],
    ]
    replaced = entries[0]["changes"][0]
    assert first is not None and replaced["before"] == json.loads(first)["sha256"]
    assert replaced["after"] != replaced["before"] and entries[0]["reason"] == "hub sync"

    report = run_gc(config, store, "manual", runner_over(store, config).keeping_out, grace_hours=0)
    assert report.removed == [replaced["before"]]
    (gc_entry,) = journal.recent(1)
    assert gc_entry["changes"] == [{"event": "blob deleted", "sha256": replaced["before"]}]
    assert journal.verify() is None


def test_hub_import_journals_the_model_it_publishes_and_the_one_it_replaces(
    tmp_path: Path,
) -> None:
    """`hub import` commits a model as the sync does, so the journal records it too."""
    from tests.support.archives import FAKE_MODEL, tar_bytes

    handle = "https://tfhub.dev/google/imported/1"
    first, second = tmp_path / "first.tar.gz", tmp_path / "second.tar.gz"
    first.write_bytes(tar_bytes(FAKE_MODEL))
    second.write_bytes(tar_bytes({**FAKE_MODEL, "assets/extra.txt": b"v2"}))
    path = tmp_path / "hub.toml"
    path.write_text(f'[storage]\npath = "{tmp_path / "store"}"\n')
    cli = [sys.executable, "-m", "tfmirror.cli", "--config", str(path)]
    for archive in (first, second):
        done = subprocess.run(
            [*cli, "hub", "import", str(archive), "--handle", handle],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0 and "new" in done.stdout, done.stderr

    shown = subprocess.run([*cli, "history", "--json"], capture_output=True, text=True)
    entries = json.loads(shown.stdout)
    assert [[c["event"] for c in e["changes"]] for e in entries] == [
        ["model replaced"],
        ["model published"],
    ]
    replaced = entries[0]["changes"][0]
    assert replaced["model"] == handle and replaced["before"] == entries[1]["changes"][0]["after"]
    assert entries[0]["reason"] == "hub import" and "@" in entries[0]["actor"]
    ok = subprocess.run([*cli, "history", "--verify"], capture_output=True, text=True)
    assert ok.returncode == 0 and "2 entries, every link matches" in ok.stdout
