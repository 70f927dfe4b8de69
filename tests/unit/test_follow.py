"""Following, below HTTP: which keys a follower may take, the state diff, the journal's
extension check, the centre's read API through Flask's test client, and a pull's
refusals against a centre whose store the test edits (the real HTTP pulls are in
tests/functional/test_follow.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from bundle.contents import read_manifests
from follow.centre import Centre, Head
from follow.errors import FollowRefused
from follow.pull import pull
from follow.state import CentreState, differs, followed_key, sha256_of, state_of
from mirror.advisories.database import CURRENT, Current
from mirror.core.config import Target, parse_config
from mirror.core.config.follow import FollowConfig
from mirror.core.credentials import FOLLOW_API_TOKEN_ENV, FOLLOW_TOKEN_ENV
from mirror.core.errors import ConfigError, DownloadError
from mirror.core.follow_status import PULLED, read_pulled
from mirror.core.journal import OUTER, Journal, extends
from mirror.core.quarantine import QUARANTINE, add_rules, new_rule, read_quarantine
from mirror.core.snapshots import Promotion, read_promotion, save_promotion, snapshot_names
from mirror.core.storage import BlobStore, LocalStore
from mirror.core.upstream import Fetched
from mirror.pypi.manifest import Manifest
from mirror.pypi.resolve import Wheel
from tfmirror.app import create_app
from tfmirror.snapshotting import drop_snapshot, take_snapshot

FOLLOW = FollowConfig(url="http://centre.test:8000")


@pytest.mark.parametrize(
    "key",
    [
        "manifests/pypi/default/cp311-manylinux_2_28_x86_64.json",
        "manifests/hub/google/model/keras/1.json",
        "snapshots/2026-11-28-good.json",
        "state/promoted.json",
        "state/quarantine.json",
    ],
)
def test_a_follower_takes_manifests_snapshots_and_the_policy(key: str) -> None:
    assert followed_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "manifests/pypi/../../state/bundle/imported.json",
        "manifests/pypi/default/../x.json",
        "manifests/pypi//x.json",
        "manifests/pypi/x.txt",
        "manifests/other/x.json",
        "/etc/passwd",
        "journal/outer.jsonl",
        "runs/pypi/latest.json",
        "state/follow/pulled.json",
        "snapshots/../state/x.json",
        "blobs/sha256/aa/" + "a" * 64,
    ],
)
def test_any_other_key_is_neither_served_nor_written(key: str) -> None:
    assert not followed_key(key)


def test_the_diff_lists_what_is_missing_or_differs_and_not_what_is_held() -> None:
    held = {"a": b"same", "b": b"old"}
    wanted = {"a": sha256_of(b"same"), "b": sha256_of(b"new"), "c": sha256_of(b"c")}
    assert differs(held, wanted) == ["b", "c"]
    assert differs(held, {"a": sha256_of(b"same")}) == []


def test_a_state_naming_a_key_outside_or_no_sha256_is_refused() -> None:
    good = {"seq": 1, "head": "h", "manifests": {"manifests/pypi/d/t.json": "0" * 64}}
    assert CentreState.from_json(good).manifests == good["manifests"]
    for bad in (
        {**good, "manifests": {"state/bundle/imported": "0" * 64}},
        {**good, "manifests": {"manifests/pypi/d/t.json": "not-a-sha"}},
        {**good, "policy": {"journal/head.json": "0" * 64}},
        [],
    ):
        with pytest.raises(ValueError):
            CentreState.from_json(bad)


def _lines(store: BlobStore) -> list[bytes]:
    return [e.raw for e in Journal(store).entries()]


def test_the_journal_check_takes_an_extension_and_names_a_rewritten_entry(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path)
    for n in range(4):
        Journal(store).record([{"event": "e", "n": n}], "a")
    lines = _lines(store)
    held = b"".join(line + b"\n" for line in lines[:2])
    assert extends(held, lines[2:]) is None
    assert extends(b"", lines) is None
    rewritten = json.loads(lines[1])
    rewritten["reason"] = "edited"
    edited = b"".join(x + b"\n" for x in [lines[0], json.dumps(rewritten).encode()])
    broken = extends(edited, lines[2:])
    assert broken is not None and broken.seq == 2
    skipped = extends(held, lines[3:])
    assert skipped is not None and skipped.seq == 2


class StoreCentre(Centre):
    """A centre read straight from its store, as its API serves it, minus HTTP; blobs
    "served" by copying, `lie` flipping a byte in one and `lose` 404ing another."""

    def __init__(self, store: BlobStore) -> None:
        super().__init__(FOLLOW)
        self.store = store
        self.blobs_asked: list[str] = []
        self.lie: str | None = None
        self.lose: str | None = None
        self.unmoved = False
        self.heard: list[int] = []  # the entry the site said it held, at each head

    def head(self, etag: str | None, held: int) -> Head | None:
        self.heard.append(held)
        entry = Journal(self.store).head()
        tag = f"{entry.seq}.{entry.sha256}" if entry else "empty"
        if etag == tag:
            self.unmoved = True
            return None
        return Head(entry.seq, entry.sha256, tag) if entry else Head(-1, "", tag)

    def entries_after(self, seq: int, until: int) -> list[bytes]:
        return [e.raw for e in Journal(self.store).after(seq, until - seq)]

    def state(self) -> CentreState:
        return state_of(self.store)

    def document(self, key: str, sha256: str) -> bytes:
        data = self.store.get(key) or b""
        assert sha256_of(data) == sha256
        return data

    def blob(self, store: BlobStore, sha256: str, size: int | None) -> Fetched:
        self.blobs_asked.append(sha256)
        if sha256 == self.lose:
            raise DownloadError("HTTP 404")
        with self.store.open_blob(sha256) as file:
            data = file.read()
        if sha256 == self.lie:
            data = bytes([data[0] ^ 1]) + data[1:]
        got = hashlib.sha256(data).hexdigest()
        if got != sha256:
            raise DownloadError(f"sha256 mismatch: index lists {sha256}, bytes hash to {got}")
        writer = store.new_blob()
        writer.write(data)
        writer.publish(sha256)
        return Fetched(sha256, len(data), "")


def _put_blob(store: BlobStore, data: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()
    writer = store.new_blob()
    writer.write(data)
    writer.publish(sha)
    return sha


def _commit_closure(store: BlobStore, *names: str) -> Manifest:
    """A committed closure of wheels `names` at the centre, journaled as a sync does."""
    files = []
    for name in names:
        data = f"wheel {name}".encode()
        sha = _put_blob(store, data)
        project, version = name.split("-")[:2]
        files.append(Wheel(project, version, name, "", sha, len(data)))
    manifest = Manifest(Target("3.11", "manylinux_2_28_x86_64"), ("alpha",), files)
    store.put(manifest.key, manifest.to_bytes())
    Journal(store).record([{"event": "added", "files": list(names)}], "sync")
    return manifest


@pytest.fixture
def sides(tmp_path: Path) -> tuple[LocalStore, LocalStore, StoreCentre]:
    centre_store, site = LocalStore(tmp_path / "centre"), LocalStore(tmp_path / "site")
    _commit_closure(centre_store, "alpha-1.0-py3-none-any.whl", "beta-1.0-py3-none-any.whl")
    return centre_store, site, StoreCentre(centre_store)


def test_a_pull_brings_the_manifests_blobs_and_journal_and_a_second_asks_nothing(
    sides: tuple[LocalStore, LocalStore, StoreCentre],
) -> None:
    centre_store, site, centre = sides
    done = pull(site, FOLLOW, centre, "manual")
    assert (done.manifests, done.new_blobs) == (1, 2)
    assert read_manifests(site) == read_manifests(centre_store)
    assert site.get(OUTER) == b"".join(line + b"\n" for line in _lines(centre_store))
    assert any(e.doc["changes"][0]["event"] == "followed" for e in Journal(site).entries())
    centre.unmoved = False  # the first pull's report of where it ended was a 304 too
    again = pull(site, FOLLOW, centre, "manual")
    assert again.unchanged and centre.unmoved and len(centre.blobs_asked) == 2

    # A new closure sharing beta: only alpha 2.0 crosses.
    new = _commit_closure(centre_store, "alpha-2.0-py3-none-any.whl", "beta-1.0-py3-none-any.whl")
    third = pull(site, FOLLOW, centre, "manual")
    assert third.new_blobs == 1 and centre.blobs_asked[-1] == new.files[0].sha256


def test_a_wrong_byte_or_a_blob_the_centre_cannot_deliver_commits_nothing(
    sides: tuple[LocalStore, LocalStore, StoreCentre],
) -> None:
    centre_store, site, centre = sides
    pull(site, FOLLOW, centre, "manual")
    before = read_manifests(site), site.get(OUTER)
    new = _commit_closure(centre_store, "alpha-2.0-py3-none-any.whl")
    for bad in ("lie", "lose"):
        setattr(centre, bad, new.files[0].sha256)
        with pytest.raises(FollowRefused, match=new.files[0].sha256):
            pull(site, FOLLOW, centre, "manual")
        assert (read_manifests(site), site.get(OUTER)) == before
        setattr(centre, bad, None)
    assert pull(site, FOLLOW, centre, "manual").manifests == 1


def test_a_centre_journal_that_is_no_extension_of_the_one_held_is_refused(
    sides: tuple[LocalStore, LocalStore, StoreCentre], tmp_path: Path
) -> None:
    centre_store, site, centre = sides
    pull(site, FOLLOW, centre, "manual")
    before = read_manifests(site), site.get(OUTER)
    # The centre rewrites its history: its entry 0 is other bytes now.
    first = sorted(centre_store.list("journal/entries"))[0]
    doc = json.loads(centre_store.get(first) or b"")
    doc["reason"] = "rewritten"
    centre_store.put(first, json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())
    _commit_closure(centre_store, "alpha-2.0-py3-none-any.whl")
    with pytest.raises(FollowRefused, match="not an extension"):
        pull(site, FOLLOW, centre, "manual")
    assert (read_manifests(site), site.get(OUTER)) == before
    # Another centre, with a journal shorter than the one held.
    other = LocalStore(tmp_path / "other")
    _commit_closure(other, "gamma-1.0-py3-none-any.whl")
    with pytest.raises(FollowRefused, match="not an extension"):
        pull(site, FOLLOW, StoreCentre(other), "manual")
    assert (read_manifests(site), site.get(OUTER)) == before


def test_the_centres_quarantine_is_taken_and_this_sides_purges_are_its_own(
    sides: tuple[LocalStore, LocalStore, StoreCentre],
) -> None:
    centre_store, site, centre = sides
    rule = new_rule("alpha==1.0", "CVE", "ops")
    add_rules(centre_store, [rule])
    Journal(centre_store).record([{"event": "quarantined"}], "ops")
    done = pull(site, FOLLOW, centre, "manual")
    assert done.quarantine_changed
    (taken,) = read_quarantine(site).rules
    assert taken.spec == "alpha==1.0" and not taken.devpi_purged  # the site's devpi's to do
    # An unreadable quarantine document is refused, not read as "no rules".
    centre_store.put(QUARANTINE, b'{"no": "rules"}')
    Journal(centre_store).record([{"event": "quarantine edited"}], "ops")
    with pytest.raises(FollowRefused, match="quarantine"):
        pull(site, FOLLOW, centre, "manual")
    assert [r.spec for r in read_quarantine(site).rules] == ["alpha==1.0"]


def test_the_api_answers_an_unmoved_head_with_304_and_wants_its_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalStore(tmp_path / "store")
    _commit_closure(store, "alpha-1.0-py3-none-any.whl")
    monkeypatch.setenv(FOLLOW_API_TOKEN_ENV, "t0k")
    config = parse_config({}, tmp_path)
    client = create_app(config, store).test_client()
    auth = {"Authorization": "Bearer t0k"}
    assert client.get("/api/follow/head").status_code == 401
    assert client.get("/api/follow/head", headers={"Authorization": "Bearer no"}).status_code == 401
    head = client.get("/api/follow/head", headers=auth)
    assert head.status_code == 200 and head.json == {"seq": 0, "sha256": head.json["sha256"]}
    etag = head.headers["ETag"]
    assert (
        client.get("/api/follow/head", headers={**auth, "If-None-Match": etag}).status_code == 304
    )
    state = client.get("/api/follow/state", headers=auth).json
    (key,) = state["manifests"]
    assert client.get(f"/api/follow/doc?key={key}", headers=auth).data == store.get(key)
    refused = client.get("/api/follow/doc?key=state/bundle/imported", headers=auth)
    assert refused.status_code == 404
    journal = client.get("/api/follow/journal?after=-1", headers=auth)
    assert journal.data.splitlines() == _lines(store)
    assert client.get("/api/follow/journal?after=0", headers=auth).data == b""
    wheel = Manifest.from_bytes(store.get(key) or b"").files[0]
    blob = client.get(f"/api/follow/blob/{wheel.sha256}", headers=auth)
    assert blob.status_code == 200 and blob.data == b"wheel alpha-1.0-py3-none-any.whl"
    assert client.get("/api/follow/blob/..%2f..%2fetc", headers=auth).status_code == 404


def test_the_read_token_comes_from_the_environment_and_goes_to_the_centre_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A secret is never kept in the config file: one put there is refused, in one line.
    for section, env in (("follow", FOLLOW_TOKEN_ENV), ("follow_api", FOLLOW_API_TOKEN_ENV)):
        raw = {section: {"url": "http://centre.test:8000", "token": "s3cr3t-t0ken"}}
        with pytest.raises(ConfigError) as caught:
            parse_config(raw, tmp_path)
        assert str(caught.value) == (
            f"[{section}] token: a secret is never kept in the config file; remove it and "
            f"set {env} in the environment"
        )
    monkeypatch.setenv(FOLLOW_TOKEN_ENV, "s3cr3t-t0ken")
    config = parse_config({"follow": {"url": "http://centre.test:8000"}}, tmp_path)
    assert config.follow is not None
    policy = Centre(config.follow).policy
    assert "s3cr3t-t0ken" not in repr(policy)
    assert policy.bearer is not None
    assert policy.bearer.headers_for("http://centre.test:8000/api/follow/head") == {
        "Authorization": "Bearer s3cr3t-t0ken"
    }
    assert policy.bearer.headers_for("http://storage.test/blob") == {}


def test_the_centres_advisory_database_is_followed_with_its_blobs_checked(
    sides: tuple[LocalStore, LocalStore, StoreCentre],
) -> None:
    centre_store, site, centre = sides
    export, records = _put_blob(centre_store, b"PK export"), _put_blob(centre_store, b"[]")
    current = Current(export, records, 0, 1, 0, "https://osv.example/PyPI/all.zip", "t")
    centre_store.put(CURRENT, current.to_bytes())
    Journal(centre_store).record([{"event": "advisories updated"}], "sync")
    # A blob of it the centre cannot deliver: nothing of the pull is taken.
    centre.lose = records
    with pytest.raises(FollowRefused, match=records):
        pull(site, FOLLOW, centre, "manual")
    assert site.get(CURRENT) is None and read_manifests(site) == {}
    centre.lose = None
    done = pull(site, FOLLOW, centre, "manual")
    assert site.get(CURRENT) == centre_store.get(CURRENT)
    assert site.touch_blob(export) and site.touch_blob(records)  # gc keeps them too
    assert done.advisories is not None and done.advisories["source"] == f"followed {FOLLOW.url}"
    events = [c["event"] for e in Journal(site).entries() for c in e.doc["changes"]]
    assert events.count("advisories updated") == 1
    # A document naming something that is no sha256 is refused before anything is asked.
    centre_store.put(CURRENT, current.to_bytes().replace(records.encode(), b"../../etc/x"))
    Journal(centre_store).record([{"event": "advisories updated"}], "sync")
    with pytest.raises(FollowRefused, match="no sha256"):
        pull(site, FOLLOW, centre, "manual")


def test_a_snapshot_deleted_at_the_centre_is_deleted_at_the_site_but_not_its_own(
    sides: tuple[LocalStore, LocalStore, StoreCentre],
) -> None:
    centre_store, site, centre = sides
    for name in ("s1", "s2", "s3"):
        take_snapshot(centre_store, name, "ops")
    save_promotion(centre_store, Promotion("s1"))
    Journal(centre_store).record([{"event": "snapshot promoted", "snapshot": "s1"}], "ops")
    pull(site, FOLLOW, centre, "manual")
    assert snapshot_names(site) == ["s1", "s2", "s3"] and read_promotion(site).snapshot == "s1"
    take_snapshot(site, "mine", "site-ops")  # the site's own: never the centre's to delete

    # The centre moves its fleet to live and deletes s1 and s2 between two pulls: the
    # site follows the promotion first, then deletes both, journaled as its own changes.
    save_promotion(centre_store, Promotion(""))
    drop_snapshot(centre_store, "s1", "ops")
    drop_snapshot(centre_store, "s2", "ops")
    done = pull(site, FOLLOW, centre, "manual")
    assert (done.promotion, done.snapshots_deleted) == ("", ["s1", "s2"])
    assert snapshot_names(site) == ["mine", "s3"] and read_promotion(site).snapshot == ""
    deleted = [
        change
        for entry in Journal(site).entries()
        for change in entry.doc["changes"]
        if change["event"] == "snapshot deleted"
    ]
    assert deleted == [
        {"event": "snapshot deleted", "snapshot": n, "followed": True} for n in ("s1", "s2")
    ]


def test_a_site_promoting_on_its_own_keeps_a_deleted_snapshot_its_fleet_is_on(
    sides: tuple[LocalStore, LocalStore, StoreCentre],
) -> None:
    centre_store, site, centre = sides
    own = FollowConfig(url=FOLLOW.url, follow_promotion=False)
    take_snapshot(centre_store, "s1", "ops")
    pull(site, own, centre, "manual")
    save_promotion(site, Promotion("s1"))  # this site's fleet is held on the centre's s1
    drop_snapshot(centre_store, "s1", "ops")
    done = pull(site, own, centre, "manual")
    assert (done.snapshots_deleted, done.snapshots_kept) == ([], ["s1"])
    assert snapshot_names(site) == ["s1"]
    # Promoted elsewhere, the next pull that finds the centre moved deletes it.
    save_promotion(site, Promotion(""))
    _commit_closure(centre_store, "alpha-2.0-py3-none-any.whl")
    assert pull(site, own, centre, "manual").snapshots_deleted == ["s1"]
    assert snapshot_names(site) == []


def test_a_pulled_record_of_the_last_release_finds_the_taken_snapshots_in_the_journal(
    sides: tuple[LocalStore, LocalStore, StoreCentre],
) -> None:
    centre_store, site, centre = sides
    take_snapshot(centre_store, "s1", "ops")
    pull(site, FOLLOW, centre, "manual")
    take_snapshot(site, "mine", "site-ops")
    last = read_pulled(site)
    assert last.snapshots == ("s1",)
    # As the release before wrote it: no list of the snapshots taken.
    site.put(PULLED, json.dumps({"url": last.url, "etag": last.etag, "seq": last.seq}).encode())
    drop_snapshot(centre_store, "s1", "ops")
    assert pull(site, FOLLOW, centre, "manual").snapshots_deleted == ["s1"]
    assert snapshot_names(site) == ["mine"] and read_pulled(site).snapshots == ()


def test_the_head_is_asked_with_a_short_timeout_so_an_outage_shows_within_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A link cut mid-request drops packets: at a blob's 60 s and four retries the site's
    # page would say nothing for minutes.
    asked: list[tuple[float, int]] = []

    def hung(url: str, policy: object, *args: object) -> None:
        asked.append((policy.timeout, policy.retries))  # type: ignore[attr-defined]
        raise DownloadError(url, "timed out")

    monkeypatch.setattr("follow.centre.fetch_unless", hung)
    centre = Centre(FOLLOW)
    with pytest.raises(DownloadError):
        centre.head(None, 0)
    assert asked == [(10.0, 1)]
    assert (centre.policy.timeout, centre.policy.retries) == (60.0, 4)  # blobs keep theirs
