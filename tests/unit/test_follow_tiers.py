"""Following, past one pull: a chain of two followers (centre -> region -> site, each an
in-process store read as its API serves it), a site's lag and its outage line, a
centre's list of followers, the retry schedule, and pulls cut short (by a centre that
stops delivering, or a crash) that resume without fetching a blob twice."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bundle.contents import read_manifests
from follow.errors import BlobsMissing
from follow.pull import pull
from mirror.core.config import parse_config
from mirror.core.config.follow import FollowConfig
from mirror.core.errors import ConfigError
from mirror.core.follow_status import (
    FOLLOW_STATUS,
    PULLED,
    Pulled,
    SiteFollow,
    failed,
    pulled,
    read_follow_status,
    read_pulled,
    retry_delay,
    save_pulled,
)
from mirror.core.followers import (
    FOLLOWER_HEADER,
    FOLLOWER_SEQ_HEADER,
    FOLLOWERS,
    KEPT,
    note_follower,
    read_followers,
)
from mirror.core.journal import OUTER, Journal, verify_outer
from mirror.core.quarantine import add_rules, new_rule, read_quarantine
from mirror.core.snapshots import snapshot_names
from mirror.core.storage import BlobStore, LocalStore
from mirror.core.upstream import Fetched
from tests.unit.test_follow import FOLLOW, StoreCentre, _commit_closure
from tfmirror.app import create_app
from tfmirror.snapshotting import drop_snapshot, take_snapshot

REGION = FollowConfig(url="http://region.test:8000")
T0 = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class Delivering(StoreCentre):
    """Counts the blobs it actually delivered (a failed ask is not a fetch)."""

    def __init__(self, store: BlobStore) -> None:
        super().__init__(store)
        self.delivered: Counter[str] = Counter()

    def blob(self, store: BlobStore, sha256: str, size: int | None) -> Fetched:
        got = super().blob(store, sha256, size)
        self.delivered[sha256] += 1
        return got


def test_a_site_of_a_site_serves_the_centres_closure_and_verifies_the_regions_journal(
    tmp_path: Path,
) -> None:
    centre_store = LocalStore(tmp_path / "centre")
    region, leaf = LocalStore(tmp_path / "region"), LocalStore(tmp_path / "leaf")
    _commit_closure(centre_store, "alpha-1.0-py3-none-any.whl", "beta-1.0-py3-none-any.whl")
    centre, upper = StoreCentre(centre_store), StoreCentre(region)
    pull(region, FOLLOW, centre, "manual")
    pull(leaf, REGION, upper, "manual")
    assert read_manifests(leaf) == read_manifests(centre_store)
    region_head = Journal(region).head()
    assert region_head is not None

    # A takedown at the centre crosses both tiers, each at its own pull.
    add_rules(centre_store, [new_rule("alpha==1.0", "CVE", "ops")])
    Journal(centre_store).record([{"event": "quarantined"}], "ops")
    pull(region, FOLLOW, centre, "manual")
    done = pull(leaf, REGION, upper, "manual")
    assert done.quarantine_changed
    assert [r.spec for r in read_quarantine(leaf).rules] == ["alpha==1.0"]

    # The leaf's outer journal is the region's own, whole and verifiable; each pull the
    # region made names the centre's head by number and sha256.
    region_lines = [e.raw for e in Journal(region).entries()]
    assert (leaf.get(OUTER) or b"").splitlines() == region_lines
    assert verify_outer(leaf) == (len(region_lines), None)
    followed = [
        c for e in Journal(region).entries() for c in e.doc["changes"] if c["event"] == "followed"
    ]
    centre_head = Journal(centre_store).head()
    assert centre_head is not None
    assert followed[-1]["centre_head_sha256"] in {e.sha256 for e in Journal(centre_store).entries()}
    # Each ask for the head said which entry the asker held.
    # and after a pull that moved it, where it now is.
    assert upper.heard == [-1, region_head.seq, region_head.seq, done.seq]


def test_a_snapshot_deleted_at_the_centre_is_deleted_down_the_chain(tmp_path: Path) -> None:
    centre_store = LocalStore(tmp_path / "centre")
    region, leaf = LocalStore(tmp_path / "region"), LocalStore(tmp_path / "leaf")
    _commit_closure(centre_store, "alpha-1.0-py3-none-any.whl")
    take_snapshot(centre_store, "s1", "ops")
    centre, upper = StoreCentre(centre_store), StoreCentre(region)
    pull(region, FOLLOW, centre, "manual")
    pull(leaf, REGION, upper, "manual")
    assert snapshot_names(leaf) == ["s1"]
    drop_snapshot(centre_store, "s1", "ops")
    assert pull(region, FOLLOW, centre, "manual").snapshots_deleted == ["s1"]
    assert pull(leaf, REGION, upper, "manual").snapshots_deleted == ["s1"]
    assert snapshot_names(region) == snapshot_names(leaf) == []


def test_the_retry_schedule_doubles_up_to_its_cap_and_resets_on_success() -> None:
    assert retry_delay(0, 30, 300) == 30
    assert [retry_delay(n, 30, 300) for n in range(1, 10)] == [
        2,
        4,
        8,
        16,
        32,
        64,
        128,
        256,
        300,
    ]
    assert retry_delay(10_000, 30, 300) == 300
    assert retry_delay(3, 30, 5) == 5


def _pull_ended(store: BlobStore, url: str, seq: int, when: str) -> None:
    """What a pull that succeeded leaves: its record of the entry held, then the status."""
    save_pulled(store, Pulled(url, f"{seq}.etag", seq, ()))
    pulled(store, url, seq, when)


def test_a_site_behind_or_cut_off_says_so_with_its_lag_and_clears_when_a_pull_succeeds(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path)
    url = "http://centre.test:8000"
    _pull_ended(store, url, 7, _iso(T0))
    caught_up = (read_follow_status(store) or SiteFollow(url)).at(T0 + timedelta(seconds=90))
    assert (caught_up.entries_behind, caught_up.lag_seconds, caught_up.notice) == (0, 0.0, "")

    # The centre stops answering: the site serves what it had and counts the time.
    failed(store, url, _iso(T0 + timedelta(minutes=1)), "ConnectionError", unreachable=True)
    failed(store, url, _iso(T0 + timedelta(minutes=2)), "ConnectionError", unreachable=True)
    down = (read_follow_status(store) or SiteFollow(url)).at(T0 + timedelta(minutes=5))
    assert down.failures == 2 and down.lag_seconds == 300.0
    assert down.notice == (
        "following http://centre.test:8000: centre unreachable since 2026-12-01T12:01:00Z, "
        "serving what was pulled at 2026-12-01T12:00:00Z"
    )

    # Back, but a pull cut short: the head it saw, the blobs it still lacks.
    failed(
        store,
        url,
        _iso(T0 + timedelta(minutes=6)),
        "blob ab: HTTP 404",
        unreachable=False,
        centre_seq=10,
        missing=(3, 3_000_000),
    )
    cut = (read_follow_status(store) or SiteFollow(url)).at(T0 + timedelta(minutes=6))
    assert (cut.entries_behind, cut.lag_seconds) == (3, 360.0)
    assert "pulls failing since 2026-12-01T12:01:00Z (blob ab: HTTP 404)" in cut.notice
    assert cut.notice.endswith("3 blobs (3.0 MB) not fetched yet"), cut.notice

    _pull_ended(store, url, 10, _iso(T0 + timedelta(minutes=7)))
    again = (read_follow_status(store) or SiteFollow(url)).at(T0 + timedelta(minutes=8))
    assert (again.entries_behind, again.lag_seconds, again.failures, again.notice) == (
        0,
        0.0,
        0,
        "",
    )


def test_the_entry_held_has_one_record_and_the_last_releases_documents_still_read(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path)
    url = "http://centre.test:8000"
    # As the release before wrote them: a held_seq in status.json too, no snapshot list.
    store.put(PULLED, json.dumps({"url": url, "etag": "12.ab", "seq": 12}).encode())
    old = {"url": url, "held_seq": 9, "centre_seq": 12, "last_success": _iso(T0)}
    store.put(FOLLOW_STATUS, json.dumps(old).encode())
    assert read_pulled(store) == Pulled(url, "12.ab", 12, None)
    status = read_follow_status(store)
    # pulled.json, written by the pull itself, is the entry held: the copy is ignored.
    assert status is not None and (status.held_seq, status.centre_seq) == (12, 12)
    assert status.at(T0).entries_behind == 0
    # Written now, status.json keeps no copy; another centre's pulled.json holds nothing.
    pulled(store, url, 12, _iso(T0))
    assert "held_seq" not in json.loads(store.get(FOLLOW_STATUS) or b"{}")
    save_pulled(store, Pulled("http://other.test:8000", "3.cd", 3, ()))
    moved = read_follow_status(store)
    assert moved is not None and moved.held_seq == -1


def test_a_centre_keeps_its_last_followers_with_their_lag(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    Journal(store).record([{"event": "e", "n": 0}], "sync")
    Journal(store).record([{"event": "e", "n": 1}], "sync")
    Journal(store).record([{"event": "e", "n": 2}], "sync")
    one = Journal(store).after(0, 1)[0]
    written = datetime.fromisoformat(one.doc["at"].replace("Z", "+00:00"))
    assert note_follower(store, "site-a", "2", "10.0.0.1", "2026-12-01T12:00:00Z")
    assert note_follower(store, "site-b", "0", "10.0.0.2", "2026-12-01T12:00:01Z")
    for bad_name, bad_seq in (("../etc", "1"), ("", "1"), ("x" * 65, "1"), ("site-c", "x")):
        assert not note_follower(store, bad_name, bad_seq, "10.0.0.3", "2026-12-01T12:00:02Z")
    rows = {r.name: r for r in read_followers(store, written + timedelta(seconds=40))}
    assert set(rows) == {"site-a", "site-b"}
    assert (rows["site-a"].entries_behind, rows["site-a"].lag_seconds) == (0, 0.0)
    # site-b lacks entries 1 and 2: 2 behind, for as long as entry 1 has existed.
    assert rows["site-b"].entries_behind == 2
    assert rows["site-b"].lag_seconds == pytest.approx(40.0, abs=1.0)

    # An idle follower's poll (same entry, same address) rewrites nothing for a minute.
    before = store.get(FOLLOWERS)
    assert note_follower(store, "site-a", "2", "10.0.0.1", "2026-12-01T12:00:59Z")
    assert store.get(FOLLOWERS) == before
    assert note_follower(store, "site-a", "2", "10.0.0.1", "2026-12-01T12:01:00Z")
    assert store.get(FOLLOWERS) != before
    moved = store.get(FOLLOWERS)
    assert note_follower(store, "site-a", "3", "10.0.0.1", "2026-12-01T12:01:01Z")  # moved on
    assert store.get(FOLLOWERS) != moved

    # Bounded: the longest unseen are dropped first.
    for n in range(KEPT + 5):
        note_follower(
            store, f"n{n:03d}", "2", "10.0.0.9", f"2026-12-02T12:{n // 60:02d}:{n % 60:02d}Z"
        )
    names = {r.name for r in read_followers(store, written)}
    assert len(names) == KEPT and "site-a" not in names and f"n{KEPT + 4:03d}" in names
    assert "n000" not in names


def test_a_pull_names_its_site_and_the_centre_lists_it_on_its_status(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path / "store")
    _commit_closure(store, "alpha-1.0-py3-none-any.whl")
    Journal(store).record([{"event": "more"}], "sync")
    client = create_app(parse_config({}, tmp_path), store).test_client()
    say = {FOLLOWER_HEADER: "site-berlin", FOLLOWER_SEQ_HEADER: "0"}
    assert client.get("/api/follow/head", headers=say).status_code == 200
    assert client.get("/api/follow/head").status_code == 200  # an ask without a name
    (row,) = client.get("/api/status").json["followers"]
    assert (row["name"], row["seq"], row["entries_behind"]) == ("site-berlin", 0, 1)
    page = client.get("/").data.decode()
    assert "site-berlin" in page and "1 entries" in page
    metrics = client.get("/metrics").data.decode()
    assert 'tfmirror_follower_entries_behind{follower="site-berlin"} 1.0' in metrics


def test_a_followers_name_is_checked_in_the_config(tmp_path: Path) -> None:
    raw = {"follow": {"url": "http://centre.test:8000", "name": "a site"}}
    with pytest.raises(ConfigError, match=r"\[follow\] name"):
        parse_config(raw, tmp_path)
    config = parse_config({"follow": {**raw["follow"], "name": "site-1"}}, tmp_path)
    assert config.follow is not None and config.follow.name == "site-1"


def test_after_a_cut_pull_the_next_fetches_only_what_it_lacked_and_nothing_twice(
    tmp_path: Path,
) -> None:
    centre_store, site = LocalStore(tmp_path / "centre"), LocalStore(tmp_path / "site")
    old = _commit_closure(centre_store, "alpha-1.0-py3-none-any.whl")
    centre = Delivering(centre_store)
    pull(site, FOLLOW, centre, "manual")
    names = [f"p{n}-1.0-py3-none-any.whl" for n in range(6)]
    new = _commit_closure(centre_store, *names)
    lost = new.files[2].sha256
    centre.lose = lost  # the centre goes away with this one unsent
    with pytest.raises(BlobsMissing) as cut:
        pull(site, FOLLOW, centre, "manual")
    assert (cut.value.blobs, cut.value.size) == (1, new.files[2].size)
    head = Journal(centre_store).head()
    assert head is not None and cut.value.centre_seq == head.seq
    centre.lose = None
    done = pull(site, FOLLOW, centre, "manual")
    assert done.new_blobs == 1 and done.manifests == 1
    assert read_manifests(site) == read_manifests(centre_store)
    assert max(centre.delivered.values()) == 1  # no blob crossed twice
    assert set(centre.delivered) == {f.sha256 for f in [*old.files, *new.files]}


class Crash(BaseException):
    """The process dies mid-pull (not an error a pull handles)."""


def test_a_site_that_died_mid_pull_fetches_only_the_blobs_it_had_not_stored(
    tmp_path: Path,
) -> None:
    centre_store, site = LocalStore(tmp_path / "centre"), LocalStore(tmp_path / "site")
    new = _commit_closure(centre_store, *[f"q{n}-1.0-py3-none-any.whl" for n in range(5)])
    dying = new.files[3].sha256

    class DiesOnOne(Delivering):
        def blob(self, store: BlobStore, sha256: str, size: int | None) -> Fetched:
            if sha256 == dying:
                raise Crash()
            return super().blob(store, sha256, size)

    first = DiesOnOne(centre_store)
    with pytest.raises(Crash):
        pull(site, FOLLOW, first, "manual")
    assert read_manifests(site) == {}  # nothing committed
    stored = set(first.delivered)
    assert stored == {f.sha256 for f in new.files} - {dying}
    # Restarted: a new process, a new pull; only the blob never stored crosses.
    second = Delivering(centre_store)
    done = pull(site, FOLLOW, second, "manual")
    assert set(second.delivered) == {dying} and done.new_blobs == 1
    assert read_manifests(site) == read_manifests(centre_store)
    assert json.loads(site.get("state/follow/pulled.json") or b"{}")["seq"] == 0
