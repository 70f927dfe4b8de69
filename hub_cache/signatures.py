"""Publisher signatures: a model whose `[hub] models` entry says `signed_by` is served
only if the signature it carries (model.sig, or Kaggle's .kaggle/signing.json) verifies
with OpenSSF's model-signing over exactly the files extracted from its archive, by the
trust material the entry names. The signature file itself is set aside while the files
are hashed: it is not one of the files it signs."""

from __future__ import annotations

import ast
import base64
import json
import re
import shutil
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography import x509

from hub_cache.archive import inspect_archive
from hub_cache.errors import ArchiveRejected, SignatureRefused
from hub_cache.limits import caps
from hub_cache.models import HUB_MANIFESTS, ModelManifest
from mirror.core.config.hub import HubConfig
from mirror.core.config.signatures import CERTIFICATE, KEY, SignedBy
from mirror.core.scratch import scratch_dir
from mirror.core.storage import BlobStore

SIGNATURE_FILES = ("model.sig", ".kaggle/signing.json")
# The library's mismatch is the repr of a list of lines, each changed file with both
# digests: the file names are the news.
_MISMATCH = "Signature mismatch: "
_LINES = {
    "changed since signing": re.compile(r"^Hash mismatch for '(.+?)': Expected"),
    "not signed": re.compile(r"^Extra files found in model '.*?': (.+)$"),
    "signed but missing": re.compile(r"^Missing files in model '.*?': (.+)$"),
}


def _reason(message: str) -> str:
    """A mismatch as the files it names; any other refusal as the library said it."""
    try:
        lines = ast.literal_eval(message.removeprefix(_MISMATCH))
    except (ValueError, SyntaxError):
        lines = None
    if not message.startswith(_MISMATCH) or not isinstance(lines, list):
        return message[:500]
    found: dict[str, list[str]] = {}
    for line in map(str, lines):
        for what, pattern in _LINES.items():
            match = pattern.match(line)
            if match:
                found.setdefault(what, []).append(match.group(1))
    return "; ".join(f"{what}: {', '.join(names)}" for what, names in found.items())[:500]


def _verifier(signed_by: SignedBy) -> Any:
    # Imported here: model-signing pulls in sigstore and its TUF client, which only a
    # model with a signed_by entry needs.
    from model_signing import verifying

    config = verifying.Config()  # type: ignore[no-untyped-call]
    trust = signed_by.path
    if signed_by.method == KEY and trust is not None:
        return config.use_elliptic_key_verifier(public_key=trust)
    if signed_by.method == CERTIFICATE and trust is not None:
        return config.use_certificate_verifier(certificate_chain=[trust])
    # Without a trust_config the Sigstore client fetches its public trust root (TUF)
    # online: the outer side's way; an inner side carries the file.
    return config.use_sigstore_verifier(
        identity=signed_by.identity, oidc_issuer=signed_by.issuer, trust_config=signed_by.path
    )


def _refusal(signed_by: SignedBy, exc: Exception) -> SignatureRefused:
    reason = _reason(str(exc)) or type(exc).__name__
    if "TUF" in reason:  # Sigstore's client could not fetch its public trust root
        reason += (
            " (Sigstore's trust root is fetched online; where it cannot be reached, carry "
            "it in and name it as signed_by.trust_config)"
        )
    return SignatureRefused(f"signature does not verify against {signed_by.describe()}: {reason}")


def _bounded_verifier(signed_by: SignedBy, timeout: float) -> Any:
    """The verifier, made within `timeout`: Sigstore's, without a trust_config, fetches
    its trust root from a network that may never answer. Only that is bounded; hashing a
    16 GB model takes what it takes."""
    made: list[Any] = []

    def make() -> None:
        try:
            made.append(_verifier(signed_by))
        except Exception as exc:  # any: the verify below says why
            made.append(exc)

    # A daemon thread: one stuck on a network that never answers does not hold the
    # process open, and the refusal does not wait for it.
    worker = threading.Thread(target=make, name="signature-trust", daemon=True)
    worker.start()
    worker.join(timeout)
    if not made:
        raise SignatureRefused(
            f"signature not checked against {signed_by.describe()}: its trust root did not "
            f"answer within {timeout:g} s; carry it in and name it as signed_by.trust_config"
        )
    if isinstance(made[0], Exception):
        raise _refusal(signed_by, made[0])
    return made[0]


def _verify(folder: Path, signature: Path, signed_by: SignedBy, timeout: float) -> None:
    """model-signing's verdict. Any error it raises is a refusal: it raises ValueError,
    OpenSSL's and cryptography's own, and JSON errors for a malformed signature."""
    verifier = _bounded_verifier(signed_by, timeout)
    try:
        verifier.verify(folder, signature)
    except Exception as exc:  # any: see the docstring
        raise _refusal(signed_by, exc) from None


def _signed_names(signature: Path) -> set[str]:
    """The files the (verified) signature names: its in-toto statement's resources."""
    doc = json.loads(signature.read_bytes())
    statement = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    return {str(r["name"]) for r in statement["predicate"]["resources"]}


def _unsigned(folder: Path, signature: Path) -> list[str]:
    """Files extracted that the signature does not cover. model-signing leaves out what
    the signer's `ignore_paths` name (by default `.git*`), and so would the check; but
    the mirror serves every file of the archive, so each must be one the signer signed."""
    try:
        signed = _signed_names(signature)
    except (ValueError, KeyError, TypeError) as exc:  # verified above: not expected
        raise SignatureRefused(f"its signature names no files: {exc}") from None
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir()}
    return sorted(present - signed)


def _leaf_subject(signature: Path) -> str:
    """The subject of the certificate that signed (the first of the bundle's chain)."""
    doc = json.loads(signature.read_bytes())
    chain = doc["verificationMaterial"]["x509CertificateChain"]["certificates"]
    leaf = x509.load_der_x509_certificate(base64.b64decode(chain[0]["rawBytes"]))
    return leaf.subject.rfc4514_string()


def _signer(signed_by: SignedBy, signature: Path, name: str) -> dict[str, str]:
    """The verified signer, as the manifest keeps it: never a path of this machine."""
    signer = {"method": signed_by.method, "signature": name, "trust": signed_by.shown}
    if signed_by.method == KEY:
        signer["signer"] = f"sha256:{signed_by.fingerprint}"
    elif signed_by.method == CERTIFICATE:
        signer["signer"] = _leaf_subject(signature)
    else:
        signer.update(signer=signed_by.identity, issuer=signed_by.issuer)
    return signer


def verify_folder(folder: Path, signed_by: SignedBy, timeout: float) -> dict[str, str]:
    """Check the signature an extracted model carries; its signer, or SignatureRefused."""
    name = next((n for n in SIGNATURE_FILES if (folder / n).is_file()), None)
    if name is None:
        raise SignatureRefused(
            f"no signature: {signed_by.describe()} must sign it, and it carries neither "
            + " nor ".join(SIGNATURE_FILES)
        )
    carried = folder / name
    with scratch_dir("tfmirror-signature-") as aside:
        held = aside / "signature"
        shutil.move(carried, held)
        try:
            _verify(folder, held, signed_by, timeout)
            unsigned = _unsigned(folder, held)
            if unsigned:
                raise SignatureRefused(
                    f"signature verifies against {signed_by.describe()} but does not cover "
                    f"every file served: not signed: {', '.join(unsigned)[:400]}"
                )
            return _signer(signed_by, held, name)
        finally:
            shutil.move(held, carried)


def verify_kept(store: BlobStore, model: ModelManifest, hub: HubConfig) -> dict[str, str] | None:
    """The check of a model kept in the store, with the trust material its entry in `hub`
    names now: its signer; None where its entry requires no signature (an alias serves
    its main model's blob, checked under that one). SignatureRefused or ArchiveRejected
    where it does not verify. `tfmirror verify`, and an inner side's bundle import."""
    entry = next((m for m in hub.models if m.handle == model.handle), None)
    if entry is None or entry.signed_by is None or model.alias_of:
        return None
    with scratch_dir("tfmirror-model-") as folder:
        with store.open_blob(model.sha256) as reader:
            inspect_archive(reader, model.size, caps(hub), extract_to=folder)
        return verify_folder(folder, entry.signed_by, hub.timeout)


def check_brought(store: BlobStore, manifests: Mapping[str, bytes], hub: HubConfig) -> None:
    """The inner side's own check of models a bundle brings: each whose entry here says
    `signed_by` is verified with this side's trust material before the import commits
    (SignatureRefused names the first that does not verify; nothing is imported)."""
    for key, data in sorted(manifests.items()):
        if not key.startswith(HUB_MANIFESTS + "/"):
            continue
        model = ModelManifest.from_bytes(data)
        try:
            verify_kept(store, model, hub)
        except (SignatureRefused, ArchiveRejected) as exc:
            raise SignatureRefused(f"{model.handle}: {exc}") from None
