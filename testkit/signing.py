"""Publisher signing for tests and benches, with the real model-signing library: an EC
key pair, and a CA with a code-signing leaf certificate, each written as PEM files; and
a model folder signed by either (the signature inside it, as a publisher ships it)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: Path


def make_key_pair(folder: Path, name: str = "vendor") -> KeyPair:
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    private, public = folder / f"{name}.key", folder / f"{name}.pub"
    private.write_bytes(_private_pem(key))
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return KeyPair(private, public)


@dataclass(frozen=True)
class CertificateChain:
    ca: Path  # what a verifier trusts
    leaf: Path  # the publisher's signing certificate
    leaf_key: Path
    subject: str  # the leaf's subject, RFC 4514


def _certificate(
    subject: str,
    issuer: str,
    public: ec.EllipticCurvePublicKey,
    signer: ec.EllipticCurvePrivateKey,
    is_ca: bool,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    # model-signing's verifier wants the leaf good for digital signatures (or code
    # signing); a CA signs certificates.
    usage = dict.fromkeys(
        (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    usage.update(key_cert_sign=is_ca, crl_sign=is_ca, digital_signature=not is_ca)
    builder = builder.add_extension(x509.KeyUsage(**usage), critical=True)
    if not is_ca:
        eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING])
        builder = builder.add_extension(eku, critical=False)
    return builder.sign(signer, hashes.SHA256())


def make_certificate_chain(folder: Path, subject: str = "Vendor Model Release") -> CertificateChain:
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, leaf_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca = _certificate("Test Model CA", "Test Model CA", ca_key.public_key(), ca_key, True)
    leaf = _certificate(subject, "Test Model CA", leaf_key.public_key(), ca_key, False)
    paths = CertificateChain(folder / "ca.pem", folder / "leaf.pem", folder / "leaf.key", "")
    paths.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths.leaf.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths.leaf_key.write_bytes(_private_pem(leaf_key))
    return CertificateChain(paths.ca, paths.leaf, paths.leaf_key, leaf.subject.rfc4514_string())


def sign_with_key(model: Path, keys: KeyPair, signature: str = "model.sig") -> Path:
    """Sign every file of `model` (as it is now); the signature goes inside it."""
    from model_signing import signing

    out = model / signature
    out.parent.mkdir(parents=True, exist_ok=True)
    signing.Config().use_elliptic_key_signer(private_key=keys.private).sign(model, out)
    return out


def sign_with_certificate(
    model: Path, chain: CertificateChain, signature: str = "model.sig"
) -> Path:
    from model_signing import signing

    out = model / signature
    out.parent.mkdir(parents=True, exist_ok=True)
    signing.Config().use_certificate_signer(
        private_key=chain.leaf_key, signing_certificate=chain.leaf, certificate_chain=[chain.ca]
    ).sign(model, out)
    return out
