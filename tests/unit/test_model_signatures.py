"""Publisher signatures on small folders, signed with the real model-signing library: a
`signed_by` the config cannot use exits 2 with one line; a folder signed by the key or
certificate chain the entry names verifies and names its signer; a changed byte, a
signature by another key, and no signature at all are each refused with their reason;
Sigstore without a reachable trust root is refused within its time, saying so."""

from __future__ import annotations

import json
import socket
import tomllib
from pathlib import Path
from typing import Any

import pytest

from hub_cache.errors import SignatureRefused
from hub_cache.signatures import verify_folder
from mirror.core.config import parse_config
from mirror.core.config.signatures import SignedBy
from mirror.core.errors import ConfigError
from testkit.signing import (
    make_certificate_chain,
    make_key_pair,
    sign_with_certificate,
    sign_with_key,
)

HANDLE = "https://tfhub.dev/vendor/m/1"
VARIABLES = "variables/variables.data-00000-of-00001"


def signed_by(tmp_path: Path, table: str) -> SignedBy | None:
    entry: dict[str, Any] = {"handle": HANDLE, "signed_by": tomllib.loads(f"x = {table}")["x"]}
    raw = {"storage": {"path": "store"}, "hub": {"models": [entry]}}
    return parse_config(raw, tmp_path).hub.models[0].signed_by


def model_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"graph" * 100)
    (folder / VARIABLES).write_bytes(bytes(range(256)) * 40)
    (folder / "variables" / "variables.index").write_bytes(b"index")
    return folder


@pytest.mark.parametrize(
    ("table", "said"),
    [
        ('{ key = "keys/missing.pub" }', "signed_by.key = 'keys/missing.pub': cannot read"),
        ('{ key = "not-a-key.pub" }', "is not a PEM elliptic-curve public key"),
        ('{ certificate_chain = "not-a-key.pub" }', "holds no PEM certificate"),
        ('{ identity = "r@v.example" }', "Sigstore needs both identity and issuer"),
        ('{ identity = "r@v.example", issuer = "http://x" }', "must be an https:// URL"),
        ('{ key = "k.pub", identity = "r@v.example" }', "name exactly one signer"),
        ('{ key = "k.pub", issuer = "https://x" }', "only a Sigstore identity takes it"),
        ('{ keys = "k.pub" }', "unknown key 'keys'"),
        (
            '{ identity = "r@v.example", issuer = "https://x", trust_config = "not-a-key.pub" }',
            "is not a Sigstore client trust config",
        ),
    ],
)
def test_a_signed_by_the_config_cannot_use_is_a_config_error(
    tmp_path: Path, table: str, said: str
) -> None:
    (tmp_path / "not-a-key.pub").write_text("hello")
    with pytest.raises(ConfigError, match=said.replace("(", r"\(")) as caught:
        signed_by(tmp_path, table)
    assert "\n" not in str(caught.value)


def test_a_bare_tflite_file_cannot_require_a_signature(tmp_path: Path) -> None:
    keys = make_key_pair(tmp_path)
    raw = {
        "storage": {"path": "store"},
        "hub": {
            "models": [
                {
                    "handle": "https://tfhub.dev/google/lite-model/m/1",
                    "signed_by": {"key": str(keys.public)},
                }
            ]
        },
    }
    with pytest.raises(ConfigError, match=r"a bare \.tflite file carries no signature"):
        parse_config(raw, tmp_path)


def test_a_folder_signed_by_the_key_verifies_and_a_changed_byte_does_not(tmp_path: Path) -> None:
    keys = make_key_pair(tmp_path / "keys")
    trust = signed_by(tmp_path, '{ key = "keys/vendor.pub" }')
    assert trust is not None and trust.shown == "keys/vendor.pub"
    folder = model_folder(tmp_path)
    sign_with_key(folder, keys)

    signer = verify_folder(folder, trust, 30)
    assert signer == {
        "method": "key",
        "signer": f"sha256:{trust.fingerprint}",
        "signature": "model.sig",
        "trust": "keys/vendor.pub",
    }
    assert (folder / "model.sig").is_file()  # set aside while hashing, then put back

    data = bytearray((folder / VARIABLES).read_bytes())
    data[77] ^= 1
    (folder / VARIABLES).write_bytes(bytes(data))
    with pytest.raises(SignatureRefused) as caught:
        verify_folder(folder, trust, 30)
    assert f"changed since signing: {VARIABLES}" in str(caught.value)
    assert "key keys/vendor.pub" in str(caught.value)


def test_a_file_the_signature_leaves_out_is_refused_though_the_library_passes_it(
    tmp_path: Path,
) -> None:
    # model-signing skips .git* paths (the signer's ignore_paths) on both sides, so a
    # file added there after signing verifies; the mirror would serve it unsigned.
    keys = make_key_pair(tmp_path / "keys")
    trust = signed_by(tmp_path, '{ key = "keys/vendor.pub" }')
    assert trust is not None
    folder = model_folder(tmp_path)
    sign_with_key(folder, keys)
    (folder / ".gitattributes").write_text("* filter=evil\n")
    with pytest.raises(SignatureRefused, match=r"does not cover every file served: not signed: "):
        verify_folder(folder, trust, 30)


def test_a_signature_by_another_key_or_none_at_all_is_refused(tmp_path: Path) -> None:
    make_key_pair(tmp_path / "keys")
    trust = signed_by(tmp_path, '{ key = "keys/vendor.pub" }')
    assert trust is not None
    folder = model_folder(tmp_path)
    with pytest.raises(SignatureRefused, match=r"no signature: .* carries neither model\.sig"):
        verify_folder(folder, trust, 30)
    sign_with_key(folder, make_key_pair(tmp_path / "other"))
    with pytest.raises(SignatureRefused, match=r"does not verify against key keys/vendor\.pub"):
        verify_folder(folder, trust, 30)


def test_a_certificate_chain_names_the_leaf_and_refuses_another_ca(tmp_path: Path) -> None:
    chain = make_certificate_chain(tmp_path / "pki")
    trust = signed_by(tmp_path, '{ certificate_chain = "pki/ca.pem" }')
    assert trust is not None
    folder = model_folder(tmp_path)
    sign_with_certificate(folder, chain, ".kaggle/signing.json")
    signer = verify_folder(folder, trust, 30)
    assert signer["signer"] == chain.subject == "CN=Vendor Model Release"
    assert signer["signature"] == ".kaggle/signing.json"

    make_certificate_chain(tmp_path / "other")
    other = signed_by(tmp_path, '{ certificate_chain = "other/ca.pem" }')
    assert other is not None
    with pytest.raises(SignatureRefused, match="does not verify against a certificate"):
        verify_folder(folder, other, 30)


def test_sigstore_without_its_trust_root_is_refused_in_bounded_time(tmp_path: Path) -> None:
    """No network here: the public trust root cannot be fetched; a trust_config file that
    holds none is refused as such. Either way, a reason, not a hang."""
    trust = signed_by(
        tmp_path, '{ identity = "release@vendor.example", issuer = "https://accounts.google.com" }'
    )
    assert trust is not None and trust.describe().startswith("Sigstore identity")
    folder = model_folder(tmp_path)
    sign_with_key(folder, make_key_pair(tmp_path / "keys"))
    with pytest.raises(SignatureRefused) as caught:
        verify_folder(folder, trust, 20)
    assert "Sigstore identity release@vendor.example" in str(caught.value)
    assert "name it as signed_by.trust_config" in str(caught.value)

    (tmp_path / "trust.json").write_text(json.dumps({"trustedRoot": {}}))
    carried = signed_by(
        tmp_path,
        '{ identity = "r@v.example", issuer = "https://accounts.google.com", '
        'trust_config = "trust.json" }',
    )
    assert carried is not None and carried.shown == "trust.json"
    with pytest.raises(SignatureRefused, match="does not verify against Sigstore"):
        verify_folder(folder, carried, 20)


def test_a_sigstore_trust_root_that_never_answers_is_refused_after_the_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sigstore's TUF client reaches its repository through a proxy that takes the
    connection and never answers (a firewall that drops): refused at the timeout."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{silent.getsockname()[1]}")
    trust = signed_by(
        tmp_path, '{ identity = "r@v.example", issuer = "https://accounts.google.com" }'
    )
    assert trust is not None
    folder = model_folder(tmp_path)
    sign_with_key(folder, make_key_pair(tmp_path / "keys"))
    try:
        with pytest.raises(SignatureRefused, match=r"its trust root did not answer within 1 s"):
            verify_folder(folder, trust, 1)
    finally:
        silent.close()
    assert (folder / "model.sig").is_file()
