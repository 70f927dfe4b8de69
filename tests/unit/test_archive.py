"""Archive validation: every malicious or broken kind is refused with its reason."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from hub_cache.archive import Capture, inspect_archive
from hub_cache.errors import ArchiveRejected
from hub_cache.limits import ArchiveLimits
from tests.support.archives import (
    FAKE_MODEL,
    MALICIOUS_KINDS,
    malicious,
    sparse_archive,
    tar_bytes,
)

CAPS = ArchiveLimits(max_uncompressed=1 << 30, max_ratio=100)


def inspect(data: bytes, caps: ArchiveLimits = CAPS, extract_to: Path | None = None):  # type: ignore[no-untyped-def]
    return inspect_archive(io.BytesIO(data), len(data), caps, extract_to)


@pytest.mark.parametrize("compress", [True, False])
def test_good_archive_facts(compress: bool) -> None:
    facts = inspect(tar_bytes(FAKE_MODEL, compress=compress))
    assert facts.files == 3 and facts.directories == 1
    assert facts.uncompressed_size == sum(len(v) for v in FAKE_MODEL.values())
    assert facts.root_file == "saved_model.pb"
    assert facts.compression == ("gzip" if compress else "none")


def test_the_graph_is_kept_from_the_checking_pass_and_still_extracted(tmp_path: Path) -> None:
    data = tar_bytes(FAKE_MODEL)
    graph = FAKE_MODEL["saved_model.pb"]
    kept = inspect_archive(io.BytesIO(data), len(data), CAPS, None, Capture("saved_model.pb", 1024))
    assert kept.captured == graph
    out = tmp_path / "out"
    out.mkdir()
    both = inspect_archive(io.BytesIO(data), len(data), CAPS, out, Capture("saved_model.pb", 1024))
    assert both.captured == graph and (out / "saved_model.pb").read_bytes() == graph
    # Over what the caller keeps in memory: not kept (read again later), still extracted.
    small = Capture("saved_model.pb", len(graph) - 1)
    (tmp_path / "o2").mkdir()
    over = inspect_archive(io.BytesIO(data), len(data), CAPS, tmp_path / "o2", small)
    assert over.captured is None
    assert (tmp_path / "o2" / "saved_model.pb").read_bytes() == graph
    # The facts a manifest keeps say nothing of it.
    assert "captured" not in kept.as_json()


@pytest.mark.parametrize("kind", sorted(MALICIOUS_KINDS))
def test_malicious_and_broken_archives_are_rejected(kind: str) -> None:
    with pytest.raises(ArchiveRejected) as info:
        inspect(malicious(kind))
    assert MALICIOUS_KINDS[kind] in str(info.value)


def test_size_cap_is_enforced_while_streaming() -> None:
    data = tar_bytes({"saved_model.pb": b"g", "variables/v": b"\1" * (3 << 20)})
    with pytest.raises(ArchiveRejected, match="max_uncompressed_mb"):
        inspect(data, ArchiveLimits(max_uncompressed=1 << 20, max_ratio=1000))


def test_extraction_writes_the_model_and_nothing_outside(tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    inspect(tar_bytes(FAKE_MODEL), extract_to=target)
    got = {str(p.relative_to(target)): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    assert got == FAKE_MODEL
    evil = tmp_path / "evil"
    evil.mkdir()
    with pytest.raises(ArchiveRejected):
        inspect(malicious("dotdot"), extract_to=evil)
    assert not (tmp_path / "evil.sh").exists() and not (tmp_path.parent / "evil.sh").exists()


@pytest.mark.parametrize("tar_format", ["gnu", "pax"])
def test_sparse_members_are_refused_before_their_holes_are_written(
    tmp_path: Path, tar_format: str
) -> None:
    data = sparse_archive(tmp_path, tar_format)
    assert len(data) < 1 << 20  # 100 MiB of holes, a few KB on the wire
    target = tmp_path / "model"
    target.mkdir()
    with pytest.raises(ArchiveRejected, match="sparse member"):
        inspect(data, ArchiveLimits(max_uncompressed=16 << 20, max_ratio=100), extract_to=target)
    assert sum(p.stat().st_size for p in target.rglob("*") if p.is_file()) < 1 << 20


def test_a_declared_terabyte_is_refused_at_its_header() -> None:
    with pytest.raises(ArchiveRejected, match="declares 1000000000000 bytes"):
        inspect(
            malicious("declares_a_terabyte"), ArchiveLimits(max_uncompressed=1 << 50, max_ratio=1e9)
        )


def test_reasons_quote_at_most_a_bounded_name() -> None:
    name = "./" + "n" * 200_000 + "/saved_model.pb"
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        tar.addfile(info, io.BytesIO(b""))
    data = out.getvalue()
    with pytest.raises(ArchiveRejected) as info:
        inspect(data)
    assert len(str(info.value)) < 500
