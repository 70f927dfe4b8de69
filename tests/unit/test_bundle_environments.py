"""Bundles carry every environment: the inner mirror gets each environment's manifests
and their blobs, and serves each environment's index whatever its own config names."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bundle.export import export
from bundle.importer import import_bundle
from mirror.core.config import Target, parse_config
from mirror.core.storage import HashingWriter, LocalStore
from mirror.pypi.manifest import Manifest, load_all, save_manifest
from mirror.pypi.resolve import Wheel
from tfmirror.app import create_app

TARGET = Target("3.11", "manylinux_2_28_x86_64")


def wheel(store: LocalStore, project: str, version: str) -> Wheel:
    data = os.urandom(2000)
    writer = HashingWriter(store.new_blob())
    writer.write(data)
    sha = writer.publish()
    name = f"{project}-{version}-py3-none-any.whl"
    return Wheel(project, version, name, f"https://up/{name}", sha, len(data))


def test_every_environment_crosses_and_is_served_inside(tmp_path: Path) -> None:
    outer = LocalStore(tmp_path / "outer")
    serving = Manifest(TARGET, ("alpha<2",), [wheel(outer, "alpha", "1.0")], "t", "serving")
    training = Manifest(TARGET, ("alpha",), [wheel(outer, "alpha", "2.0")], "t", "training")
    save_manifest(outer, serving)
    save_manifest(outer, training)
    key = Ed25519PrivateKey.generate()
    export(outer, key, tmp_path / "b1", full=True)

    inner = LocalStore(tmp_path / "inner")
    import_bundle(inner, tmp_path / "b1", key.public_key())

    assert {m.where: [w.sha256 for w in m.files] for m in load_all(inner)} == {
        m.where: [w.sha256 for w in m.files] for m in (serving, training)
    }
    assert all(inner.has_blob(w.sha256) for m in load_all(inner) for w in m.files)
    # An inner config that names no environment still serves each one's index.
    config = parse_config({"pypi": {"upstream": ""}}, tmp_path)
    client = create_app(config, inner).test_client()
    accept = {"Accept": "application/vnd.pypi.simple.v1+json"}
    for env, version in (("serving", "1.0"), ("training", "2.0")):
        page = client.get(f"/tfmirror/{env}/+simple/alpha/", headers=accept)
        assert page.status_code == 200 and page.get_json()["versions"] == [version]
    union = client.get("/tfmirror/pypi/+simple/alpha/", headers=accept).get_json()
    assert union["versions"] == ["1.0", "2.0"]
