"""The certificate nginx shows for the public names it answers ([proxy] answer_for):
checked at start as a node will check it, so a wrong file is one line naming the key,
not an nginx that will not start or a fleet that refuses the mirror."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

MAX_PEM = 1024 * 1024  # a certificate chain or key is a few KB


def _read(path: Path, what: str) -> bytes | str:
    """The file's bytes, or why it cannot be read."""
    try:
        if path.stat().st_size > MAX_PEM:
            return f"{path} is over {MAX_PEM // 1024} KiB: not a PEM {what}"
        return path.read_bytes()
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"


def _covers(pattern: str, name: str) -> bool:
    """RFC 6125: a wildcard stands for exactly one leftmost label."""
    pattern = pattern.lower()
    if pattern.startswith("*."):
        head, _, rest = name.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == name


def certificate_problem(certificate: Path, names: Sequence[str]) -> str | None:
    """Why `certificate` (PEM, the server's first) is not one nodes will accept for
    `names`, or None."""
    data = _read(certificate, "certificate")
    if isinstance(data, str):
        return data
    try:
        cert = x509.load_pem_x509_certificates(data)[0]
    except ValueError:
        return f"{certificate} is not a PEM certificate"
    try:
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = alt.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        dns = []  # clients match names against subjectAltName only, never the CN
    missing = [n for n in names if not any(_covers(p, n) for p in dns)]
    if missing:
        return (
            f"{certificate} does not name {', '.join(missing)} in its subjectAltName "
            "(clients check only that); have the CA sign one that lists every answer_for name"
        )
    return None


def key_problem(key: Path, certificate: Path) -> str | None:
    """Why `key` is not the unencrypted private key of `certificate`, or None."""
    data = _read(key, "key")
    if isinstance(data, str):
        return data
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        return f"{key} is encrypted; nginx starts unattended: give it the key unencrypted"
    except ValueError:
        return f"{key} is not a PEM private key"
    cert_bytes = _read(certificate, "certificate")
    if isinstance(cert_bytes, str):
        return cert_bytes
    public: CertificatePublicKeyTypes = x509.load_pem_x509_certificates(cert_bytes)[0].public_key()
    if _spki(private.public_key()) != _spki(public):
        return f"{key} is not the key of {certificate}"
    return None


def _spki(public: object) -> bytes:
    return public.public_bytes(  # type: ignore[attr-defined,no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
