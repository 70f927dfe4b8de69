"""The advisory database: OSV records parsed and matched as OSV specifies, and the
export refused whole (the last good database kept) when it breaks a cap."""

from __future__ import annotations

import io
import json
import struct
import zipfile
from pathlib import Path

import pytest

from mirror.advisories.archive import Caps, read_archive
from mirror.advisories.database import StoredRecords, load_advisories, read_current, records_bytes
from mirror.advisories.errors import ArchiveRefused
from mirror.advisories.matching import Matcher
from mirror.advisories.records import Severity, parse_record
from mirror.advisories.sync import sync_advisories
from mirror.core.config import Config
from mirror.core.config.load import parse_config
from mirror.core.errors import ConfigError
from mirror.core.journal import Journal
from mirror.core.storage import LocalStore
from tests.support.osv_records import GHSA, LAST_AFFECTED, MALICIOUS, PYSEC, RECORDS, export
from verify.gc import referenced_shas

CAPS = Caps(records=1000, record_bytes=1024 * 1024, total_bytes=64 * 2**20)


def matcher() -> Matcher:
    parsed = read_archive(io.BytesIO(data := export(RECORDS)), len(data), CAPS)
    assert parsed.skipped == []
    return Matcher.of(parsed.records)


def ids(m: Matcher, project: str, version: str) -> set[str]:
    return {f.advisory.id for f in m.affecting(project, version)}


def test_a_ghsa_range_matches_below_its_fix_under_any_spelling_of_the_name() -> None:
    m = matcher()
    assert ids(m, "tiny-lib", "1.1.9") == {"GHSA-cfgp-2977-2fmm"}
    assert ids(m, "Tiny.Lib", "0.1") == {"GHSA-cfgp-2977-2fmm"}  # "0": from the start
    assert ids(m, "tiny_lib", "1.2.0rc1") == {"GHSA-cfgp-2977-2fmm"}  # PEP 440: rc < final
    assert ids(m, "tiny-lib", "1.2.0") == set()
    assert ids(m, "tiny-lib", "1.2") == set()  # 1.2 == 1.2.0 under PEP 440
    (finding,) = m.affecting("tiny-lib", "1.0")
    assert finding.severity is Severity.HIGH
    assert finding.advisory.score == 8.8  # from the vector, by the cvss library
    assert finding.fixed_in == ("1.2.0",)


def test_the_stored_database_keeps_the_vector_and_reads_one_stored_without() -> None:
    parsed = read_archive(io.BytesIO(data := export(RECORDS)), len(data), CAPS)
    stored = StoredRecords(records_bytes(parsed.records))
    ((advisory, _),) = stored.entries("tiny-lib")
    assert advisory.vector.startswith("CVSS:3.1/") and advisory.score == 8.8
    # The last release stored six fields per advisory: it reads, with no vector.
    doc = json.loads(records_bytes(parsed.records))
    doc["advisories"] = [a[:6] for a in doc["advisories"]]
    ((older, _),) = StoredRecords(json.dumps(doc).encode()).entries("tiny-lib")
    assert older.vector == "" and older.score == 8.8


def test_an_explicit_versions_list_matches_those_versions_only() -> None:
    m = matcher()
    assert ids(m, "other-lib", "1.0.1") == {"PYSEC-2021-59"}
    assert ids(m, "other-lib", "1.0.0") == {"PYSEC-2021-59"}  # the same PEP 440 version
    assert ids(m, "other-lib", "1.0.2") == set()
    (finding,) = m.affecting("other-lib", "0.9")
    assert finding.severity is Severity.UNKNOWN and finding.fixed_in == ()


def test_last_affected_includes_that_version_and_nothing_after_it() -> None:
    m = matcher()
    assert ids(m, "third-lib", "1.9") == set()  # before introduced
    assert ids(m, "third-lib", "2.0") == {"GHSA-4v5p-v5h9-6xjx"}
    assert ids(m, "third-lib", "2.3.1") == {"GHSA-4v5p-v5h9-6xjx"}
    assert ids(m, "third-lib", "2.3.1.post1") == set()
    (finding,) = m.affecting("third-lib", "2.1")
    assert finding.severity is Severity.MEDIUM  # a CVSS v4 vector's own severity


def test_withdrawn_records_are_ignored_and_malicious_ones_are_critical() -> None:
    m = matcher()
    assert ids(m, "tiny-lib", "1.5") == set()  # only the withdrawn record covers it
    (finding,) = m.affecting("evil-lib", "6.6.6")
    assert finding.advisory.id == "MAL-2024-1234" and finding.severity is Severity.CRITICAL


def test_several_ranges_and_reintroduced_versions_follow_osv_order() -> None:
    record = json.loads(json.dumps(GHSA))
    record["affected"][0]["ranges"] = [
        {
            "type": "ECOSYSTEM",
            # Listed out of order: OSV sorts events by version before walking them.
            "events": [
                {"fixed": "3.1"},
                {"introduced": "3.0"},
                {"fixed": "1.2"},
                {"introduced": "0"},
            ],
        },
        {"type": "GIT", "repo": "https://example.org/r", "events": [{"introduced": "abc"}]},
    ]
    parsed = parse_record(record, "x.json")
    assert parsed is not None
    m = Matcher.of([parsed])
    found = {v: bool(m.affecting("tiny-lib", v)) for v in ["1.0", "1.2", "2.5", "3.0", "3.1"]}
    assert found == {"1.0": True, "1.2": False, "2.5": False, "3.0": True, "3.1": False}


def test_a_bad_record_is_named_and_skipped_and_the_others_kept() -> None:
    broken = dict(GHSA, id="GHSA-bad1-bad1-bad1")
    broken["affected"] = [
        {
            "package": {"ecosystem": "PyPI", "name": "x"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "not a version!"}]}],
        }
    ]
    nested = b"[" * 100_000 + b"]" * 100_000
    data = export([broken, PYSEC], {"deep.json": nested, "text.json": b"not json"})
    parsed = read_archive(io.BytesIO(data), len(data), CAPS)
    assert [r.advisory.id for r in parsed.records] == ["PYSEC-2021-59"]
    reasons = "\n".join(parsed.skipped)
    assert "GHSA-bad1-bad1-bad1" in reasons and "not a PEP 440 version" in reasons
    assert "deep.json: JSON nested too deeply" in reasons
    assert "text.json: not JSON" in reasons


# -- hostile exports, each refused on what it declares --------------------------------


def _bomb_member(name: str, size: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{GHSA['id']}.json", json.dumps(GHSA))
        with zf.open(name, "w", force_zip64=True) as member:
            chunk = b" " * 2**20
            for _ in range(size // len(chunk)):
                member.write(chunk)
    return out.getvalue()


def _declaring_members(count: int) -> bytes:
    """A small real zip whose end record declares `count` members (at most 65,535)."""
    return _declaring(export([GHSA]), count)


def _declaring(real: bytes, count: int) -> bytes:
    data = bytearray(real)
    at = data.rfind(b"PK\x05\x06")
    struct.pack_into("<HH", data, at + 8, count, count)
    return bytes(data)


def _zip64_declaring(count: int) -> bytes:
    """A small real zip whose zip64 end record declares `count` members, the form a
    writer of more than 65,535 members uses."""
    data = export([GHSA])
    at = data.rfind(b"PK\x05\x06")
    cd_size, cd_offset = struct.unpack_from("<II", data, at + 12)
    zip64_end = struct.pack(
        "<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, cd_size, cd_offset
    )
    locator = struct.pack("<4sIQI", b"PK\x06\x07", 0, at, 1)
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, cd_size, cd_offset, 0)
    return data[:at] + zip64_end + locator + end


HOSTILE = {
    "a 200 MB record": (
        lambda: _bomb_member("huge.json", 200 * 2**20),
        "declares 209715200 bytes, more than a record may hold",
    ),
    "a million records": (lambda: _zip64_declaring(1_000_000), "1000000 members, more than"),
    "more records than the cap": (lambda: _declaring_members(5000), "5000 members, more than"),
    "a directory of more entries than it declares": (
        lambda: _declaring(export([dict(GHSA, id=f"GHSA-{n:04d}") for n in range(1100)]), 1),
        "members, more than .* max_records = 1000",
    ),
    "a path with ..": (lambda: export([GHSA], {"../evil.json": b"{}"}), "outside the archive"),
    "an absolute path": (lambda: export([GHSA], {"/etc/evil.json": b"{}"}), "outside the archive"),
    "not a zip": (lambda: b"<html>an error page</html>", "not a zip"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_export_is_refused_on_what_it_declares(name: str) -> None:
    make, reason = HOSTILE[name]
    data = make()
    with pytest.raises(ArchiveRefused, match=reason):
        read_archive(io.BytesIO(data), len(data), CAPS)


def test_a_zip_bomb_is_refused_on_its_declared_ratio_and_total() -> None:
    data = _bomb_member("bomb.json", 64 * 2**20)  # 64 MiB of spaces in ~64 KiB
    roomy = Caps(records=1000, record_bytes=2**30, total_bytes=2**31)
    with pytest.raises(ArchiveRefused, match=r"archive bomb: member 'bomb\.json' declares"):
        read_archive(io.BytesIO(data), len(data), roomy)
    text = export(RECORDS)
    with pytest.raises(ArchiveRefused, match=r"members declare .* max_uncompressed_mb"):
        read_archive(io.BytesIO(text), len(text), Caps(1000, 2**30, 100))
    assert read_archive(io.BytesIO(text), len(text), roomy).records  # honest: taken


def test_a_member_that_inflates_past_its_declared_size_breaks_the_whole_export() -> None:
    data = bytearray(export([GHSA]))
    true = len(json.dumps(GHSA))
    # Lie in both headers: 100 bytes declared, more inflated; zipfile reads only the
    # 100 and its CRC then fails: the export is refused, nothing half-read is kept.
    for sig, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.find(sig)
        assert struct.unpack_from("<I", data, at + offset)[0] == true
        struct.pack_into("<I", data, at + offset, 100)
    with pytest.raises(ArchiveRefused, match="broken zip"):
        read_archive(io.BytesIO(bytes(data)), len(data), CAPS)


# -- the job: stored, journaled, the last good database kept ----------------------------


def _config(tmp_path: Path, **advisories: object) -> Config:
    data = {"storage": {"path": str(tmp_path / "store")}, "advisories": advisories}
    return parse_config(data, tmp_path)


def test_the_job_stores_and_journals_a_good_export_and_keeps_it_when_the_next_is_hostile(
    tmp_path: Path,
) -> None:
    source = tmp_path / "all.zip"
    source.write_bytes(export(RECORDS))
    config = _config(tmp_path, source="all.zip", max_records=100)
    store = LocalStore(tmp_path / "store")
    report = sync_advisories(config, store, "manual")
    assert report.ok and report.changed, report.summary()
    good = read_current(store)
    assert good is not None and good.records == 4 and good.members == 5  # withdrawn dropped
    assert store.has_blob(good.archive_sha256) and store.has_blob(good.records_sha256)
    # gc keeps the database in force, though no manifest lists it.
    assert {good.archive_sha256, good.records_sha256} <= referenced_shas(store)
    (entry,) = [e.doc for e in Journal(store).entries()]
    (change,) = entry["changes"]
    assert change["event"] == "advisories updated"
    assert (change["sha256"], change["records"]) == (good.archive_sha256, 4)

    assert not sync_advisories(config, store, "manual").changed  # same bytes: no entry
    for name in ("a path with ..", "more records than the cap", "not a zip"):
        source.write_bytes(HOSTILE[name][0]())
        refused = sync_advisories(config, store, "manual")
        assert not refused.ok and refused.failure is not None
        assert HOSTILE[name][1] in refused.failure.reason
        assert "stays in force" in refused.summary()
        assert read_current(store) == good
    assert len(list(Journal(store).entries())) == 1
    _, records = load_advisories(store)
    assert records.ids() == {
        GHSA["id"],
        PYSEC["id"],
        LAST_AFFECTED["id"],
        MALICIOUS["id"],
    }


def test_a_source_over_the_download_cap_is_refused_before_it_is_read(tmp_path: Path) -> None:
    source = tmp_path / "all.zip"
    source.write_bytes(b"\0" * (2 * 2**20))
    report = sync_advisories(
        _config(tmp_path, source=str(source), max_mb=1), LocalStore(tmp_path / "s"), "manual"
    )
    assert report.failure is not None and "over the 1 MiB cap" in report.failure.reason


def test_config_errors_say_what_to_fix() -> None:
    with pytest.raises(ConfigError, match=r"\[advisories\] source = '': name OSV's export"):
        parse_config({"advisories": {}}, Path.cwd())
    with pytest.raises(ConfigError, match=r"\[advisories\] sorce: unknown key"):
        parse_config({"advisories": {"source": "a.zip", "sorce": "x"}}, Path.cwd())
    with pytest.raises(ConfigError, match=r"\[schedule\] advisories: there is no \[advisories\]"):
        parse_config({"schedule": {"advisories": "0 1 * * *"}}, Path.cwd())
    assert parse_config({}, Path.cwd()).schedule.advisories == ""  # off: not scheduled
    on = parse_config({"advisories": {"source": "https://x.example/all.zip"}}, Path.cwd())
    assert on.schedule.advisories == "40 1 * * *"
