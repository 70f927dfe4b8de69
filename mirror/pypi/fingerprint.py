"""What a target's closure was resolved from, so that a sync whose inputs and upstream
pages are unchanged reuses it instead of running the resolver again.

The resolver reads every page of the closure again on each sync, one dependency level
after another: TFX's 264 pages took uv 10 s against an index that sends no cache headers,
where reading them 32 at a time takes about one. A closure is reused only when the
requirements, constraints, target and build settings are the ones it was resolved from
and the page of every project in it is byte for byte the one it was resolved against:
then each of its files is still offered with the same metadata, so it still installs.

What this cannot see is a page outside the closure, such as a new release of a project
that only a newer version of a closure project needs (that version was passed over for
want of it). So a full resolve runs at least once every FULL_RESOLVE_EVERY.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from mirror.core.config import Environment, PypiConfig, Target
from mirror.core.redact import scrub_url
from mirror.core.storage import BlobStore
from mirror.core.upstream import ProjectPages
from mirror.pypi.file_facts import read_digests

FULL_RESOLVE_EVERY = 24 * 3600.0


def fingerprint_key(environment: str, target_id: str) -> str:
    return f"state/pypi/resolved/{environment}/{target_id}.json"


@dataclass(frozen=True)
class Fingerprint:
    inputs: str  # what was asked for, and of which resolver
    pages: str  # upstream's pages of every project in the closure
    at: float  # when the resolver last ran for it (epoch seconds)
    # When a release the cooldown held back becomes eligible: the closure may change
    # then with no page changing (epoch seconds; None: nothing held back).
    until: float | None = None


def inputs_digest(
    env: Environment, target: Target, pypi: PypiConfig, advisories: str | None = None
) -> str:
    """`advisories`: what the closure is resolved around (mirror.advisories.policy)."""
    try:
        uv = version("uv")
    except PackageNotFoundError:
        uv = ""
    doc: dict[str, object] = {
        "requirements": list(env.requirements),
        "constraints": list(env.constraints),
        "target": target.id,
        # Where, not as whom: a stored digest over the password could test guesses at
        # it, and a new password changes no closure.
        "upstream": scrub_url(pypi.upstream),
        "sdists": pypi.sdists,
        "build_backends": list(pypi.build_backends),
        "uv": uv,
    }
    if env.min_age:  # only when set: a fingerprint from before the cooldown stays valid
        doc["min_age"] = env.min_age
        doc["cooldown_exempt"] = list(pypi.cooldown_exempt)
    if advisories:  # only with a database: a fingerprint from before one stays valid
        doc["advisories"] = advisories
    policy = pypi.license_policy(env.name)
    if policy.applies:  # only with a policy: a fingerprint from before one stays valid
        doc["licenses"] = [env.licenses, *map(list, (policy.allowed, policy.denied))]
        doc["allow_unknown_license"] = policy.allow_unknown
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def pages_digest(pages: ProjectPages, projects: Iterable[str]) -> str | None:
    """One digest over these projects' pages; None if any cannot be read now."""
    digest = hashlib.sha256()
    for project, page in sorted(read_digests(pages, projects).items()):
        if page is None:
            return None
        digest.update(f"{project} {page}\n".encode())
    return digest.hexdigest()


def load_fingerprint(store: BlobStore, environment: str, target_id: str) -> Fingerprint | None:
    raw = store.get(fingerprint_key(environment, target_id))
    if raw is None:
        return None
    try:
        doc = json.loads(raw)
        until = doc.get("until")
        return Fingerprint(
            str(doc["inputs"]),
            str(doc["pages"]),
            float(doc["at"]),
            float(until) if until is not None else None,
        )
    except (ValueError, KeyError, TypeError):
        return None  # unreadable: the resolver runs, and writes a good one


def save_fingerprint(store: BlobStore, environment: str, target_id: str, fp: Fingerprint) -> None:
    doc = {"inputs": fp.inputs, "pages": fp.pages, "at": fp.at, "until": fp.until}
    store.put(fingerprint_key(environment, target_id), json.dumps(doc, indent=1).encode())


def still_current(
    known: Fingerprint | None, inputs: str, pages: ProjectPages, projects: Iterable[str]
) -> bool:
    """The closure these projects form can be reused as it is."""
    if known is None or known.inputs != inputs:
        return False
    if time.time() - known.at >= FULL_RESOLVE_EVERY:
        return False
    if known.until is not None and time.time() >= known.until:
        return False  # a release the cooldown held back may enter now
    return pages_digest(pages, projects) == known.pages


PAGE_VALIDATORS = "state/pypi/page-validators.json"  # each page's ETag and sha256


def load_validators(store: BlobStore) -> dict[str, tuple[str, str]]:
    """(ETag, sha256) of each page the last sync read whole from an upstream that
    sends ETags: the next one asks If-None-Match, and a 304 is the page unread."""
    raw = store.get(PAGE_VALIDATORS)
    if raw is None:
        return {}
    try:
        doc = json.loads(raw)
        return {str(p): (str(v[0]), str(v[1])) for p, v in doc.items()}
    except (ValueError, TypeError, AttributeError, IndexError):
        return {}  # unreadable: every page is read whole, and a good one written


def save_validators(store: BlobStore, validators: dict[str, tuple[str, str]]) -> None:
    doc = {p: list(v) for p, v in sorted(validators.items())}
    store.put(PAGE_VALIDATORS, json.dumps(doc, indent=0).encode())
