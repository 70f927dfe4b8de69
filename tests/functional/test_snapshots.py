"""Snapshots: hold what the mirror offers, see what moved since, and free it when done.

The CLI as operators run it, on a mirror that syncs from a local upstream."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from mirror.core.config import load_config
from mirror.core.journal import Journal
from mirror.core.runs import read_index
from mirror.core.snapshots import load_snapshot, snapshot_names
from mirror.core.storage import open_store
from mirror.pypi.manifest import load_all
from sync_jobs.runner import RunResult
from sync_jobs.scheduler import scheduled_jobs
from testkit.mirror_env import operator_config
from testkit.upstream import Upstream
from testkit.wheels import WheelSpec
from tests.functional.test_bundle import tfmirror
from tests.support.runner import runner_over
from tfmirror.parts import MirrorParts
from verify.gc import referenced_shas
from verify.jobs import run_gc


def test_a_snapshot_holds_its_blobs_through_syncs_and_gc_frees_exactly_them_after_delete(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.add(WheelSpec("alpha", "1.0", noise=100_000))
    path = operator_config(tmp_path, upstream.index_url, ["alpha"])
    config = load_config(str(path))
    store = open_store(config.storage)
    assert tfmirror(path, "sync", "pypi").returncode == 0
    made = tfmirror(path, "snapshot", "create", "known-good", "--note", "before 1.1")
    assert made.returncode == 0 and "1 manifests" in made.stdout, made.stderr
    snap = load_snapshot(store, "known-good")
    assert snap is not None and snap.note == "before 1.1"
    held = set(snap.blobs)

    upstream.add(WheelSpec("alpha", "1.1", noise=100_000))
    assert tfmirror(path, "sync", "pypi").returncode == 0
    live = {w.sha256 for m in load_all(store) for w in m.blobs()}
    assert held - live, "the sync moved nothing on"

    shown = tfmirror(path, "snapshot", "show", "known-good", "--json")
    diff = json.loads(shown.stdout)
    assert diff["against"] == "the live mirror"
    assert diff["changed"] == ["default/py3.11-manylinux_2_28_x86_64: alpha 1.0 -> 1.1"]
    listed = tfmirror(path, "snapshot", "list")
    assert listed.stdout.startswith("known-good\t") and "before 1.1" in listed.stdout

    # Held: gc with no grace keeps every blob the snapshot names.
    assert (
        not set(
            run_gc(
                config, store, "manual", runner_over(store, config).keeping_out, grace_hours=0
            ).removed
        )
        & held
    )
    assert all(store.has_blob(sha) for sha in held)

    deleted = tfmirror(path, "snapshot", "delete", "known-good")
    assert deleted.returncode == 0
    freed = set(
        run_gc(
            config, store, "manual", runner_over(store, config).keeping_out, grace_hours=0
        ).removed
    )
    assert freed == held - referenced_shas(store)  # exactly what only it held
    assert freed == held - live
    events = [c["event"] for e in Journal(store).history() for c in e["changes"]]
    assert "snapshot created" in events and "snapshot deleted" in events


def test_snapshot_names_and_misses_are_one_line_and_exit_2(
    upstream: Upstream, tmp_path: Path
) -> None:
    path = operator_config(tmp_path, upstream.index_url, ["alpha"])
    assert tfmirror(path, "snapshot", "create", "a").returncode == 0
    for args, says in (
        (("create", "a"), "exists; snapshots never change"),
        (("create", "../x"), "use letters, digits"),
        (("show", "nope"), "does not exist"),
        (("delete", "nope"), "does not exist"),
    ):
        proc = tfmirror(path, "snapshot", *args)
        assert proc.returncode == 2 and says in proc.stderr, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1


def test_the_scheduled_snapshot_is_dated_and_keeps_the_newest_n_but_never_others(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.add(WheelSpec("alpha", "1.0"))
    schedule = '[schedule]\nsnapshot = "0 3 * * *"\nsnapshot_keep = 2\n'
    path = operator_config(tmp_path, upstream.index_url, ["alpha"], extra=schedule)
    config = load_config(str(path))
    assert ("snapshot", "0 3 * * *") in scheduled_jobs(config)
    store = open_store(config.storage)
    assert tfmirror(path, "sync", "pypi").returncode == 0
    assert tfmirror(path, "snapshot", "create", "mine").returncode == 0
    runner = MirrorParts(config, store).runner
    assert runner.run("snapshot", "schedule") is RunResult.OK
    day = f"auto-{datetime.now(UTC):%Y-%m-%d}"
    assert tfmirror(path, "snapshot", "promote", day).returncode == 0  # held: never pruned
    for _ in range(3):
        assert runner.run("snapshot", "schedule") is RunResult.OK
    names = snapshot_names(store)
    autos = [n for n in names if n.startswith("auto-") and n != day]
    assert "mine" in names and day in names and len(autos) == 2, names
    record = read_index(store, "snapshot", "latest.json") or {}
    assert record["outcome"] == "ok" and record["counts"]["deleted"] == 1, record
    events = [c["event"] for e in Journal(store).history() for c in e["changes"]]
    assert events.count("snapshot created") == 5 and events.count("snapshot deleted") == 1

    for bad, says in (("snapshot_keep = 0", "keep at least 1 snapshot"),):
        wrong = operator_config(
            tmp_path, upstream.index_url, ["alpha"], extra=f"[schedule]\n{bad}\n"
        )
        proc = tfmirror(wrong, "snapshot", "list")
        assert proc.returncode == 2 and says in proc.stderr and len(proc.stderr.splitlines()) == 1
