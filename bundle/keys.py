"""ed25519 keys for bundles (the `cryptography` library): the outer mirror signs each
bundle's index with its private key; the inner mirror trusts one public key."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bundle.errors import KeyFileError

PRIVATE = "bundle.key"
PUBLIC = "bundle.pub"


def keygen(folder: Path) -> tuple[Path, Path]:
    """Write folder/bundle.key (mode 0600, never overwritten) and folder/bundle.pub."""
    folder.mkdir(parents=True, exist_ok=True)
    private, public = folder / PRIVATE, folder / PUBLIC
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        # O_EXCL: an existing key is never replaced (bundles it signed would be orphaned).
        fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{private} exists; keygen never overwrites a key") from None
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def _read(path: Path, kind: str, parse: Callable[[bytes], object]) -> object:
    try:
        return parse(path.read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        why = type(exc).__name__
        raise KeyFileError(f"{path}: not a readable ed25519 {kind} key ({why})") from None


def load_private(path: Path) -> Ed25519PrivateKey:
    key = _read(path, "private", lambda d: serialization.load_pem_private_key(d, password=None))
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an ed25519 private key")
    return key


def load_public(path: Path) -> Ed25519PublicKey:
    key = _read(path, "public", serialization.load_pem_public_key)
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{path}: not an ed25519 public key")
    return key


def verifies(key: Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    try:
        key.verify(signature, data)
    except InvalidSignature:
        return False
    return True
