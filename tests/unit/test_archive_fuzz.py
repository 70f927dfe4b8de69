"""Archive validation against a few thousand generated archives (seeded, so a failure
names a case that reproduces): odd member kinds and names, lying sizes, every
compression, cut and flipped bytes. Validation alone and validation with extraction
must reach the same verdict, an accepted archive extracts exactly what was counted and
no more than the cap, and no case runs away (a hang guard, not a speed target)."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import random
import signal
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from hub_cache.archive import ArchiveFacts, inspect_archive
from hub_cache.errors import ArchiveRejected
from hub_cache.limits import ArchiveLimits

CASES = 3000
SEGMENTS = ["saved_model.pb", "variables", "v", "x" * 256, "..", ".", "", "a\\b", "é"]
KINDS = ["file"] * 6 + ["dir"] * 3 + ["symlink", "hardlink", "fifo", "liar"]
HANG_SECONDS = 5


class Hung(Exception):
    pass


@contextmanager
def hang_guard(seconds: int) -> Iterator[None]:
    def alarm(*_: object) -> None:
        raise Hung(f"no verdict within {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _name(rng: random.Random) -> str:
    depth = rng.choice([1, 1, 1, 2, 2, 3])
    parts = [rng.choice(SEGMENTS) for _ in range(depth)]
    if rng.random() < 0.5:
        parts[-1] = "saved_model.pb" if rng.random() < 0.5 else parts[-1]
    prefix = rng.choice(["./", "./", "", "/"])
    return prefix + "/".join(parts)


def _member(tar: tarfile.TarFile, rng: random.Random, raw: io.BytesIO) -> None:
    kind = rng.choice(KINDS)
    info = tarfile.TarInfo(_name(rng))
    data = bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 1, 511, 512, 2000])))
    if rng.random() < 0.3:
        data = b"\0" * rng.choice([10_000, 70_000])
    if kind == "dir":
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    elif kind in ("symlink", "hardlink"):
        info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
        info.linkname = _name(rng)
        tar.addfile(info)
    elif kind == "fifo":
        info.type = tarfile.FIFOTYPE
        tar.addfile(info)
    elif kind == "liar":
        # A header that declares more (or less) than the data that follows it.
        info.size = rng.choice([len(data) * 3 + 1, 10**9, max(len(data) - 100, 0)])
        raw.write(info.tobuf(tar.format, "utf-8", "surrogateescape"))
        raw.write(data + b"\0" * (-len(data) % 512))
        tar.offset = raw.tell()
    else:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def _valid_start(tar: tarfile.TarFile, rng: random.Random) -> None:
    """The start of a model archive as tfhub.dev lays it out; the rest is random."""
    for name in [".", "./variables"]:
        info = tarfile.TarInfo(name)
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    for name in ["./saved_model.pb", "./variables/variables.index"]:
        data = bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 100, 3000])))
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def make_case(seed: int) -> tuple[bytes, ArchiveLimits]:
    rng = random.Random(seed)
    raw = io.BytesIO()
    fmt = rng.choice([tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
    try:
        with tarfile.open(fileobj=raw, mode="w", format=fmt) as tar:
            if rng.random() < 0.8:
                _valid_start(tar, rng)
            for _ in range(rng.choice([0, 0, 1, 1, 2, 5])):
                _member(tar, rng, raw)
        plain = raw.getvalue()
    except ValueError:  # a name ustar cannot hold: the case is the empty archive
        plain = b""
    compress = rng.choice([_none, gzip.compress, bz2.compress, lzma.compress])
    packed = compress(plain)
    roll = rng.random()
    if roll < 0.15 and compress is not _none and plain:
        # Two streams back to back (pigz -i, bgzip, `cat a.gz b.gz`): cut at a member
        # boundary, the first alone looks like a whole archive that just ends early.
        cut = rng.choice([rng.randrange(len(plain)), 512 * rng.randrange(len(plain) // 512 + 1)])
        packed = compress(plain[:cut]) + compress(plain[cut:])
    elif roll < 0.25 and packed:
        packed = packed[: rng.randrange(len(packed))]
    elif roll < 0.35 and packed:
        flipped = bytearray(packed)
        flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
        packed = bytes(flipped)
    elif roll < 0.4:
        packed += bytes(rng.getrandbits(8) for _ in range(600))
    caps = ArchiveLimits(max_uncompressed=rng.choice([16_000, 64_000, 1 << 20]), max_ratio=100)
    return packed, caps


def _none(data: bytes) -> bytes:
    return data


def verdict(data: bytes, caps: ArchiveLimits, extract_to: Path | None) -> ArchiveFacts | str:
    try:
        with hang_guard(HANG_SECONDS):
            return inspect_archive(io.BytesIO(data), len(data), caps, extract_to)
    except ArchiveRejected as exc:
        return f"rejected: {exc}"


def test_validation_and_extraction_agree_and_stay_within_caps(tmp_path: Path) -> None:
    outcomes = {"accepted": 0, "rejected": 0}
    for seed in range(CASES):
        data, caps = make_case(seed)
        target = tmp_path / f"case-{seed}"
        target.mkdir()
        checked = verdict(data, caps, None)
        extracted = verdict(data, caps, target)
        assert checked == extracted, f"seed {seed}: validation and extraction disagree"
        files = [p for p in target.rglob("*") if p.is_file() or p.is_symlink()]
        written = sum(p.lstat().st_size for p in files)
        assert written <= caps.max_uncompressed, f"seed {seed}: wrote {written} bytes"
        assert all(p.is_file() and not p.is_symlink() for p in files), f"seed {seed}"
        if isinstance(checked, ArchiveFacts):
            outcomes["accepted"] += 1
            assert len(files) == checked.files, f"seed {seed}"
            assert written == checked.uncompressed_size, f"seed {seed}"
        else:
            outcomes["rejected"] += 1
            assert len(checked) < 700, f"seed {seed}: reason of {len(checked)} characters"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"case-{s}" for s in range(CASES))
    # The generator must reach both verdicts often, or it tests nothing.
    assert outcomes["accepted"] > CASES // 8 and outcomes["rejected"] > CASES // 3, outcomes


def as_tensorflow_hub_reads(data: bytes) -> dict[str, int]:
    """File members and sizes as tensorflow_hub's tarfile.open(mode="r|*") yields them."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|*") as tar:
        return {m.name.lstrip("./"): m.size for m in tar if m.isfile()}


def test_an_accepted_archive_is_whole_as_the_client_reads_it() -> None:
    compressed_accepted = 0
    for seed in range(CASES):
        data, caps = make_case(seed)
        checked = verdict(data, caps, None)
        if not isinstance(checked, ArchiveFacts):
            continue
        read = as_tensorflow_hub_reads(data)
        assert (len(read), sum(read.values())) == (checked.files, checked.uncompressed_size), (
            f"seed {seed}: the mirror counted {checked.files} files, the client reads {read}"
        )
        compressed_accepted += checked.compression != "none"
    assert compressed_accepted > CASES // 20


def test_two_compressed_streams_are_refused_for_each_compression() -> None:
    first = io.BytesIO()
    with tarfile.open(fileobj=first, mode="w") as tar:
        for name, data in (("saved_model.pb", b"graph"), ("variables.data", b"v" * 3000)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    plain = first.getvalue()
    cut = 1024  # after the first member: its header and one block of data
    for compress in (gzip.compress, bz2.compress, lzma.compress):
        data = compress(plain[:cut]) + compress(plain[cut:])
        assert as_tensorflow_hub_reads(data) == {"saved_model.pb": 5}  # half the model
        reason = verdict(data, ArchiveLimits(1 << 20, 1000), None)
        assert isinstance(reason, str) and "first" in reason, (compress, reason)
        # One stream of the same bytes is the whole model, and accepted.
        assert isinstance(
            verdict(compress(plain), ArchiveLimits(1 << 20, 1000), None), ArchiveFacts
        )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cases_reproduce_from_their_seed(seed: int) -> None:
    assert make_case(seed) == make_case(seed)
