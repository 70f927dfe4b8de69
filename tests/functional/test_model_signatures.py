"""Publisher signatures end to end: a real SavedModel (made with TensorFlow) signed with
the real model-signing library, by an EC key the test makes (model.sig) and by a CA ->
leaf certificate chain it makes (.kaggle/signing.json), served by a local tfhub.dev and
synced by the real `tfmirror` command with `signed_by`. The signed versions are
published with their signer on the page, /api/status and in the journal; one byte of a
variables file changed after signing, and an unsigned version, are each refused with
their reason while the version before stays served; `verify` checks the served one
again and fails once the config's key is another."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from hub_cache.models import load_model
from mirror.core.config import load_config
from mirror.core.storage import open_store
from testkit.servers import free_port
from testkit.signing import (
    make_certificate_chain,
    make_key_pair,
    sign_with_certificate,
    sign_with_key,
)
from tests.support.archives import tar_of_dir
from tests.support.cli import tfmirror
from tests.support.hub_upstream import HubUpstream
from tfmirror.app import create_app

VARIABLES = "variables/variables.data-00000-of-00001"


def write_config(tmp_path: Path, models: str) -> Path:
    path = tmp_path / "tfmirror.toml"
    path.write_text(
        f'[storage]\npath = "store"\n[web]\nport = {free_port()}\n'
        f"[hub]\ntimeout = 20\nretries = 1\nmodels = [{models}]\n"
    )
    return path


def copy_of(model: Path, to: Path) -> Path:
    shutil.copytree(model, to)
    return to


def test_signed_models_are_served_and_tampered_or_unsigned_ones_refused(
    saved_models: tuple[Path, dict[str, Any]], hub_up: HubUpstream, tmp_path: Path
) -> None:
    models, _ = saved_models
    original = models / "keras"
    keys = make_key_pair(tmp_path / "keys")
    chain = make_certificate_chain(tmp_path / "pki")

    signed = copy_of(original, tmp_path / "signed")
    sign_with_key(signed, keys)
    handle = hub_up.add("vendor/m/1", tar_of_dir(signed))
    by_cert = copy_of(original, tmp_path / "by-cert")
    sign_with_certificate(by_cert, chain, ".kaggle/signing.json")
    cert_handle = hub_up.add("vendor/c/1", tar_of_dir(by_cert))
    config = write_config(
        tmp_path,
        f'{{handle = "{handle}", signed_by = {{ key = "keys/vendor.pub" }}}}, '
        f'{{handle = "{cert_handle}", signed_by = {{ certificate_chain = "pki/ca.pem" }}}}',
    )
    synced = tfmirror(config, "sync", "hub")
    assert synced.returncode == 0, synced.stderr
    store = open_store(load_config(config).storage)
    served = load_model(store, "vendor/m/1")
    assert served is not None
    fingerprint = load_config(config).hub.models[0].signed_by.fingerprint  # type: ignore[union-attr]
    assert served.signer == {
        "method": "key",
        "signer": f"sha256:{fingerprint}",
        "signature": "model.sig",
        "trust": "keys/vendor.pub",
    }
    cert_served = load_model(store, "vendor/c/1")
    assert cert_served is not None and cert_served.signer["signer"] == "CN=Vendor Model Release"
    assert cert_served.signer["signature"] == ".kaggle/signing.json"

    client = create_app(load_config(config), store).test_client()
    page = client.get("/hub/vendor/c/1").get_data(as_text=True)
    assert "CN=Vendor Model Release" in page and "pki/ca.pem" in page
    assert str(tmp_path) not in page  # the trust file as the config names it
    api = client.get("/api/status").get_json()
    rows = {m["path"]: m for m in api["inventory"]["models"]}
    assert rows["vendor/m/1"]["signer"] == f"sha256:{fingerprint}"
    status_page = client.get("/").get_data(as_text=True)
    assert "CN=Vendor Model Release" in status_page
    published = tfmirror(config, "history", "--model", handle, "--limit", "1").stdout
    assert f"signed by sha256:{fingerprint} (key)" in published

    # One byte of a variables file changed after signing: refused, naming the file.
    tampered = copy_of(signed, tmp_path / "tampered")
    data = bytearray((tampered / VARIABLES).read_bytes())
    data[len(data) // 2] ^= 0x01
    (tampered / VARIABLES).write_bytes(bytes(data))
    hub_up.add("vendor/m/1", tar_of_dir(tampered))
    refused = tfmirror(config, "sync", "hub")
    assert refused.returncode == 1
    assert f"changed since signing: {VARIABLES}" in refused.stderr, refused.stderr
    model = load_model(store, "vendor/m/1")
    assert model is not None and model.sha256 == served.sha256

    # Unsigned where a signature is required: refused, "no signature".
    hub_up.add("vendor/m/1", tar_of_dir(original))
    unsigned = tfmirror(config, "sync", "hub")
    assert unsigned.returncode == 1
    assert "no signature: key keys/vendor.pub" in unsigned.stderr, unsigned.stderr
    model = load_model(store, "vendor/m/1")
    assert model is not None and model.sha256 == served.sha256
    history = tfmirror(config, "history", "--model", handle).stdout
    assert "model refused" in history
    assert "changed since signing" in history and "no signature" in history

    # `verify` checks the served version again with the trust material named now.
    hub_up.add("vendor/m/1", tar_of_dir(signed))
    checked = tfmirror(config, "verify", "--no-install")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"signature of {handle}: ok: signed by sha256:{fingerprint}" in checked.stdout
    vendor_key = shutil.copy(keys.public, tmp_path / "vendor.pub")
    shutil.copy(make_key_pair(tmp_path / "rotated").public, keys.public)
    rotated = tfmirror(config, "verify", "--no-install")
    assert rotated.returncode == 1
    assert f"signature of {handle}: FAILED: signature does not verify" in rotated.stdout
    assert f"signature of {cert_handle}: ok" in rotated.stdout

    # A bundle carries the signed model; the inner side verifies it again with its own
    # trust material: refused (nothing imported) under a key that did not sign it, and
    # imported, signer kept, under the vendor's.
    assert tfmirror(config, "bundle", "keygen", "--out", str(tmp_path / "bk")).returncode == 0
    bundle = tmp_path / "bundle"
    made = tfmirror(
        config,
        "bundle",
        "export",
        "--key",
        str(tmp_path / "bk" / "bundle.key"),
        "-o",
        str(bundle),
        "--full",
    )
    assert made.returncode == 0, made.stderr
    inner = tmp_path / "inner"
    (inner / "keys").mkdir(parents=True)
    shutil.copy(keys.public, inner / "keys" / "vendor.pub")  # the rotated key: not the signer
    inner_config = inner / "tfmirror.toml"
    inner_config.write_text(
        f'[storage]\npath = "store"\n[web]\nport = {free_port()}\n[hub]\nmodels = '
        f'[{{handle = "{handle}", signed_by = {{ key = "keys/vendor.pub" }}}}]\n'
    )
    trust = str(tmp_path / "bk" / "bundle.pub")
    wrong = tfmirror(inner_config, "bundle", "import", str(bundle), "--trust", trust)
    assert wrong.returncode != 0
    assert f"fails this side's signed_by: {handle}: signature does not verify" in wrong.stderr
    assert "nothing was imported" in wrong.stderr
    inner_store = open_store(load_config(inner_config).storage)
    assert load_model(inner_store, "vendor/m/1") is None
    shutil.copy(vendor_key, inner / "keys" / "vendor.pub")
    right = tfmirror(inner_config, "bundle", "import", str(bundle), "--trust", trust)
    assert right.returncode == 0, right.stderr
    brought = load_model(inner_store, "vendor/m/1")
    assert brought is not None and brought.signer["signer"] == f"sha256:{fingerprint}"
