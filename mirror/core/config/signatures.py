"""A `[hub] models` entry's `signed_by`: who must have signed a model before it is
served, and the trust material that proves it (an EC public key, a certificate chain,
or a Sigstore identity and issuer). The files are read at config load, so a missing or
unreadable one is a config error, not a refused model at 3 a.m."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mirror.core.config.forms import resolve_path
from mirror.core.config.keys import Section
from mirror.core.errors import ConfigError

KEY, CERTIFICATE, SIGSTORE = "key", "certificate", "sigstore"
SIGNED_BY_EXAMPLE = (
    '{ key = "keys/vendor.pub" }, { certificate_chain = "ca.pem" } or '
    '{ identity = "release@vendor.example", issuer = "https://accounts.google.com" }'
)
_MAX_TRUST_FILE = 4 * 2**20  # a key, a chain, a Sigstore trust root: all far smaller


@dataclass(frozen=True)
class SignedBy:
    """What must have signed a model. `shown` is the trust file as the config names it
    (pages and journals say that, never a path of this machine); `path` is where it is
    here. `fingerprint`: the public key's (a key's), sha256 of its DER form."""

    method: str
    shown: str = ""
    path: Path | None = None
    identity: str = ""
    issuer: str = ""
    fingerprint: str = ""

    def describe(self) -> str:
        """One line naming the signer this expects."""
        if self.method == KEY:
            return f"key {self.shown} (sha256 {self.fingerprint[:16]})"
        if self.method == CERTIFICATE:
            return f"a certificate chaining to {self.shown}"
        return f"Sigstore identity {self.identity} from {self.issuer}"


def _read(where: str, name: str, raw: str, base: Path) -> tuple[Path, bytes]:
    path = resolve_path(base, raw)
    try:
        if path.stat().st_size > _MAX_TRUST_FILE:
            raise ConfigError(f"{where} {name} = {raw!r}: {path} is over 4 MiB")
        return path, path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{where} {name} = {raw!r}: cannot read {path}: {exc.strerror}") from None


def _key(where: str, raw: str, base: Path) -> SignedBy:
    path, data = _read(where, "signed_by.key", raw, base)
    try:
        public = serialization.load_pem_public_key(data)
    except ValueError:
        public = None
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise ConfigError(
            f"{where} signed_by.key = {raw!r}: {path} is not a PEM elliptic-curve public key; "
            "give the publisher's public key (model-signing signs with EC keys)"
        )
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return SignedBy(KEY, raw, path, fingerprint=hashlib.sha256(der).hexdigest())


def _chain(where: str, raw: str, base: Path) -> SignedBy:
    path, data = _read(where, "signed_by.certificate_chain", raw, base)
    try:
        x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ConfigError(
            f"{where} signed_by.certificate_chain = {raw!r}: {path} holds no PEM "
            "certificate; give the CA certificates the publisher's certificate chains to"
        ) from None
    return SignedBy(CERTIFICATE, raw, path)


def _sigstore(where: str, table: Mapping[str, Any], base: Path) -> SignedBy:
    identity, issuer = table.get("identity"), table.get("issuer")
    for name, value in (("identity", identity), ("issuer", issuer)):
        if not isinstance(value, str) or not value:
            raise ConfigError(
                f"{where} signed_by.{name}: Sigstore needs both identity and issuer, e.g. "
                'signed_by = { identity = "release@vendor.example", '
                'issuer = "https://accounts.google.com" }'
            )
    assert isinstance(identity, str) and isinstance(issuer, str)
    if not issuer.startswith("https://"):
        raise ConfigError(f"{where} signed_by.issuer = {issuer!r}: must be an https:// URL")
    raw = table.get("trust_config", "")
    if not isinstance(raw, str):
        raise ConfigError(f"{where} signed_by.trust_config = {raw!r}: must be a file name")
    if not raw:  # Sigstore's public trust root, fetched online when a model is checked
        return SignedBy(SIGSTORE, identity=identity, issuer=issuer)
    path, data = _read(where, "signed_by.trust_config", raw, base)
    try:
        doc = json.loads(data)
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or "trustedRoot" not in doc:
        raise ConfigError(
            f"{where} signed_by.trust_config = {raw!r}: {path} is not a Sigstore client "
            "trust config (JSON with a trustedRoot)"
        )
    return SignedBy(SIGSTORE, raw, path, identity, issuer)


def read_signed_by(s: Section, name: str, raw: Any) -> SignedBy | None:
    """The `signed_by` table: exactly one of key, certificate_chain, identity (+ issuer,
    and a trust_config for a side that cannot reach Sigstore)."""
    if raw is None:
        return None
    where = f"[{s.name}]"
    methods = [m for m in ("key", "certificate_chain", "identity") if m in raw]
    allowed = {"key", "certificate_chain", "identity", "issuer", "trust_config"}
    unknown = sorted(set(raw) - allowed)
    if len(methods) != 1 or unknown:
        wrong = f"unknown key {unknown[0]!r}" if unknown else "name exactly one signer"
        raise ConfigError(f"{where} {name}: {wrong}; e.g. {name} = {SIGNED_BY_EXAMPLE}")
    if methods[0] != "identity" and set(raw) - {methods[0]}:
        extra = sorted(set(raw) - {methods[0]})[0]
        raise ConfigError(f"{where} {name}.{extra}: only a Sigstore identity takes it")
    value = raw[methods[0]]
    if methods[0] == "identity":
        return _sigstore(where, raw, s.base)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} {name}.{methods[0]} = {value!r}: must be a file name")
    if methods[0] == "key":
        return _key(where, value, s.base)
    return _chain(where, value, s.base)
