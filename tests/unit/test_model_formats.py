"""The model format table: SavedModel is found by its root files, and a format added to
the table is recognised, published and refused by the same archive check, with no other
module changed (what the README's Development section promises)."""

from __future__ import annotations

import io
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import BinaryIO

import pytest

import hub_cache.formats
from hub_cache.archive import inspect_archive
from hub_cache.errors import ArchiveRejected
from hub_cache.formats import FORMATS, format_of, recognise
from hub_cache.formats.base import GraphOps, RuntimeKind
from hub_cache.formats.saved_model import SAVED_MODEL
from hub_cache.formats.tfjs import TFJS_FORMAT
from hub_cache.importer import import_model
from hub_cache.limits import ArchiveLimits
from mirror.core.config import parse_config
from mirror.core.contracts import Contract
from mirror.core.storage import BlobStore, LocalStore
from tests.support.archives import FAKE_MODEL, tar_bytes
from tfmirror.app import create_app

LIMITS = ArchiveLimits(max_uncompressed=1 << 30, max_ratio=100)


class Flat:
    """A stand-in for a next format: one `*.flat` file at the archive root."""

    key = "flat"
    name = "Flat"
    looks_for = "a .flat file"
    single_file = False
    checks_folder = False
    fetch_query = "flat-format=flat"
    served_query = ("flat-format", "flat")
    suffix = ".tar.gz"
    runtime: RuntimeKind | None = None
    serving_platform: str | None = None
    caches: frozenset[str] = frozenset()
    client_import = "import flat"

    def root_file(self, root_files: Collection[str]) -> str | None:
        return next((f for f in sorted(root_files) if f.endswith(".flat")), None)

    def inspect_file(
        self, reader: BinaryIO, size: int, name: str, limits: ArchiveLimits
    ) -> dict[str, object]:
        raise ArchiveRejected("archived")

    def check_folder(self, folder: Path) -> dict[str, object]:
        return {}

    def ops(self, store: BlobStore, sha256: str, root_file: str, max_bytes: int) -> GraphOps | str:
        return "not read"

    def contract(
        self, store: BlobStore, sha256: str, archive: Mapping[str, object], max_bytes: int
    ) -> Contract | str:
        return "not read"

    def load_probe(self, root_file: str) -> Path | str:
        return "not loaded"

    def usage(self, mirror_handle: str) -> dict[str, str]:
        return {"flat_open": f'flat.open("{mirror_handle}")'}


def inspect(files: dict[str, bytes]):  # type: ignore[no-untyped-def]
    data = tar_bytes(files)
    return inspect_archive(io.BytesIO(data), len(data), LIMITS)


def test_a_saved_model_is_found_by_its_root_file() -> None:
    assert recognise({"saved_model.pb", "variables"}) == (SAVED_MODEL, "saved_model.pb")
    assert recognise({"tfhub_module.pb"}) == (SAVED_MODEL, "tfhub_module.pb")
    assert recognise({"model.json"}) == (TFJS_FORMAT, "model.json")  # TF.js, not a SavedModel
    assert recognise({"readme.txt"}) is None
    assert format_of({"root_file": "saved_model.pbtxt"}) is SAVED_MODEL
    assert format_of({}) is None
    facts = inspect(FAKE_MODEL)
    assert facts.model_format is SAVED_MODEL and facts.root_file == "saved_model.pb"


def test_a_format_added_to_the_table_is_recognised_and_named_in_refusals(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    flat = Flat()
    with pytest.raises(
        ArchiveRejected, match=re.escape("no saved_model.pb, saved_model.pbtxt or tfhub")
    ):
        inspect({"m.flat": b"x"})
    monkeypatch.setattr(hub_cache.formats, "FORMATS", (*FORMATS, flat))
    facts = inspect({"m.flat": b"x"})
    assert facts.model_format is flat and facts.root_file == "m.flat"
    assert format_of(facts.as_json()) is flat
    assert inspect(FAKE_MODEL).model_format is SAVED_MODEL
    refused = (
        "no saved_model.pb, saved_model.pbtxt or tfhub_module.pb (SavedModel), model.json "
        "(TF.js), config.json (KerasHub preset), a .tflite file (archived TFLite) or a .flat "
        "file (Flat) at"
    )
    with pytest.raises(ArchiveRejected, match=re.escape(refused)):
        inspect({"readme.txt": b"x"})


def test_a_model_page_shows_how_its_own_format_loads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub_cache.formats, "FORMATS", (*FORMATS, Flat()))
    config = parse_config({"web": {"public_url": "http://mirror.internal"}}, tmp_path)
    store = LocalStore(tmp_path / "store")
    tarball = tmp_path / "model.tar.gz"
    tarball.write_bytes(tar_bytes({"m.flat": b"x"}))
    assert import_model(store, tarball, "https://tfhub.dev/x/flat/1", config.hub).status == "new"
    page = create_app(config, store).test_client().get("/hub/x/flat/1").get_data(as_text=True)
    assert 'import flat\nmodel = flat.open("http://mirror.internal/hub/x/flat/1")' in page
    assert "hub.load" not in page and "prefetch" not in page  # no tensorflow_hub cache
