"""What the index says about a file besides its bytes: upstream's word, checked."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from mirror.core.storage import LocalStore
from mirror.pypi.core_metadata import extract
from mirror.pypi.errors import MetadataError
from mirror.pypi.file_facts import settle
from mirror.pypi.resolve import Wheel
from testkit.wheels import WheelSpec, build_wheel

SPEC = WheelSpec("alpha", "1.0", requires_python=">= 3.9,\n <4")


@pytest.fixture
def stored(tmp_path: Path) -> tuple[LocalStore, Wheel]:
    store = LocalStore(tmp_path / "store")
    data = build_wheel(SPEC)
    sha = hashlib.sha256(data).hexdigest()
    writer = store.new_blob()
    writer.write(data)
    writer.publish(sha)
    return store, Wheel("alpha", "1.0", SPEC.filename, "https://up/a.whl", sha, len(data))


def entry(wheel: Wheel, **facts: object) -> dict[str, object]:
    return {"filename": wheel.filename, "hashes": {"sha256": wheel.sha256}, **facts}


def test_upstreams_word_is_taken_for_its_own_bytes_only(stored: tuple[LocalStore, Wheel]) -> None:
    store, wheel = stored
    got = settle(store, wheel, entry(wheel, **{"upload-time": "2024-03-01T10:00:00Z"}), None)
    assert got.upload_time == "2024-03-01T10:00:00Z"
    assert got.requires_python == ">= 3.9, <4"  # folded header lines, one line
    assert got.metadata_sha256 == hashlib.sha256(SPEC.metadata()).hexdigest()
    # An entry for other bytes under the same name says nothing about these.
    other = {**entry(wheel, yanked="bad"), "hashes": {"sha256": "0" * 64}}
    assert settle(store, wheel, other, got).yanked is False
    # A time that is not a time is no word; the last known one stays.
    assert settle(store, wheel, entry(wheel, **{"upload-time": "soon"}), got).upload_time == (
        "2024-03-01T10:00:00Z"
    )


def test_a_yank_and_an_unyank_upstream_are_followed(stored: tuple[LocalStore, Wheel]) -> None:
    store, wheel = stored
    first = settle(store, wheel, entry(wheel), None)
    yanked = settle(store, wheel, entry(wheel, yanked="x" * 2000), first)
    assert isinstance(yanked.yanked, str) and len(yanked.yanked) < 600  # cut, and says so
    assert settle(store, wheel, entry(wheel, yanked=False), yanked).yanked is False
    # Upstream's page missing this time: the last facts stay.
    assert settle(store, wheel, None, yanked).yanked == yanked.yanked


def test_metadata_over_the_limit_is_refused_by_its_declared_size(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    huge = WheelSpec("huge", "1.0", requires=["x" * 100] * 100_000)  # ~10 MB of METADATA
    data = build_wheel(huge)
    sha = hashlib.sha256(data).hexdigest()
    writer = store.new_blob()
    writer.write(data)
    writer.publish(sha)
    with pytest.raises(MetadataError, match=r"METADATA declares .* bytes, over"):
        extract(store, Wheel("huge", "1.0", huge.filename, "", sha, len(data)))
