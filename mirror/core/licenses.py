"""Licences, as upstreams name them, read as SPDX ids, and the policy a mirror keeps on
them. Kaggle names licences its own way ("Apache 2.0", "CC BY-NC-SA 4.0", "Gemma"): a
small table reads those; anything else goes to the `license-expression` library, which
knows SPDX ids and expressions in any case ("apache-2.0", "MIT OR Apache-2.0"). A name
that matches neither stays as given, with no SPDX id. Licences SPDX does not list but
fleets decide on (Gemma's terms, Llama's) read as `LicenseRef-` ids, which SPDX keeps for
exactly that, so a policy can name them."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from license_expression import (
    AND,
    OR,
    ExpressionError,
    LicenseExpression,
    LicenseSymbol,
    LicenseWithExceptionSymbol,
    Licensing,
    get_spdx_licensing,
)

# Where a licence was read: the upstream's metadata, what the operator stated (a
# [hub] models entry's `license`, `hub import --license`), or nowhere.
FROM_KAGGLE = "kaggle"
FROM_CONFIG = "config"
FROM_UNKNOWN = "unknown"
UNKNOWN = "unknown"

# Kaggle's licence names (its model pages and API's licenseName), by lower case.
KAGGLE_NAMES = {
    "apache 2.0": "Apache-2.0",
    "mit": "MIT",
    "cc0: public domain": "CC0-1.0",
    "cc by 4.0": "CC-BY-4.0",
    "cc by-sa 4.0": "CC-BY-SA-4.0",
    "cc by-nc 4.0": "CC-BY-NC-4.0",
    "cc by-nc-sa 4.0": "CC-BY-NC-SA-4.0",
    "cc by-nd 4.0": "CC-BY-ND-4.0",
    "cc by-nc-nd 4.0": "CC-BY-NC-ND-4.0",
    "gpl 2": "GPL-2.0-only",
    "gpl 3": "GPL-3.0-only",
    "lgpl 3": "LGPL-3.0-only",
    "bsd-3-clause": "BSD-3-Clause",
    "odc attribution license (odc-by)": "ODC-By-1.0",
    "gemma": "LicenseRef-Gemma",
    "llama 2": "LicenseRef-Llama-2",
    "llama 3": "LicenseRef-Llama-3",
    "llama 3.1": "LicenseRef-Llama-3.1",
    "llama 3.2": "LicenseRef-Llama-3.2",
}
_LICENSE_REF = re.compile(r"^LicenseRef-[A-Za-z0-9.-]{1,64}$")


@lru_cache(maxsize=1)
def _licensing() -> Licensing:
    return get_spdx_licensing()  # reads SPDX's list once: ~0.3 s


def _parsed(text: str) -> LicenseExpression | None:
    try:
        found = _licensing().parse(text, validate=True, strict=True)
    except ExpressionError:
        return None
    return found if isinstance(found, LicenseExpression) else None


def spdx_of(name: str) -> str:
    """The SPDX id or expression `name` reads as, "" where none matches."""
    name = " ".join(name.split())
    if not name or len(name) > 200:
        return ""
    table = KAGGLE_NAMES.get(name.lower())
    if table is not None:
        return table
    if _LICENSE_REF.match(name):
        return name
    found = _parsed(name)
    return str(found) if found is not None else ""


def is_spdx(text: str) -> bool:
    """Whether `text` is an SPDX id or expression as written in a policy (any case)."""
    return bool(_LICENSE_REF.match(text)) or _parsed(text) is not None


@dataclass(frozen=True)
class License:
    """One model's licence: `name` as its source gave it, `spdx` its SPDX id or
    expression ("" where it has none), `source` where it was read (FROM_*), and for an
    unknown one, why it is not known."""

    name: str
    spdx: str
    source: str
    why: str = ""

    @classmethod
    def named(cls, name: str, source: str) -> License:
        return cls(name, spdx_of(name), source)

    @classmethod
    def unknown(cls, why: str) -> License:
        return cls("", "", FROM_UNKNOWN, why)

    @property
    def known(self) -> bool:
        return self.source != FROM_UNKNOWN

    def shown(self) -> str:
        """How pages, journals and `hub check` name it."""
        return self.spdx or self.name or UNKNOWN

    def as_json(self) -> dict[str, str]:
        doc = {"name": self.name, "spdx": self.spdx, "from": self.source}
        return doc | ({"why": self.why} if self.why else {})

    @classmethod
    def from_json(cls, doc: Any) -> License:
        """As a manifest keeps it; one written before licences were recorded is unknown."""
        if not isinstance(doc, dict) or not doc.get("from"):
            return cls.unknown("synced before the mirror recorded licences")
        return cls(
            str(doc.get("name", "")),
            str(doc.get("spdx", "")),
            str(doc["from"]),
            str(doc.get("why", "")),
        )


def _keys(expressions: Iterable[str]) -> frozenset[str]:
    """The SPDX ids a policy's entries name, in lower case (an entry may be an expression)."""
    keys: set[str] = set()
    for text in expressions:
        found = None if _LICENSE_REF.match(text) else _parsed(text)
        if found is None:
            keys.add(text.lower())
            continue
        keys.add(str(found).lower())
        keys.update(k.lower() for k in _licensing().license_keys(found))
    return frozenset(keys)


@dataclass(frozen=True)
class LicensePolicy:
    """Which licences a model may have to be published: `allowed` (none: any not
    denied), `denied`, and whether one that is not known passes. No list: no policy, and
    everything passes, unknown included."""

    allowed: tuple[str, ...] = ()
    denied: tuple[str, ...] = ()
    allow_unknown: bool = False

    @property
    def applies(self) -> bool:
        return bool(self.allowed or self.denied)

    def own(
        self,
        allowed: tuple[str, ...] | None,
        denied: tuple[str, ...] | None,
        allow_unknown: bool | None,
    ) -> LicensePolicy:
        """This policy with a model's or an environment's own keys in place of these,
        where it sets them (None: not set)."""
        return LicensePolicy(
            self.allowed if allowed is None else allowed,
            self.denied if denied is None else denied,
            self.allow_unknown if allow_unknown is None else allow_unknown,
        )

    def refusal(self, license: License) -> str | None:
        """Why a model with `license` is not published, or None."""
        if not self.applies:
            return None
        if not license.known:
            if self.allow_unknown:
                return None
            why = f" ({license.why})" if license.why else ""
            return f"its licence is unknown{why} and allow_unknown_license is false"
        shown = license.shown()
        if not license.spdx:
            if self.allowed:
                return f"its licence {shown!r} is no SPDX id, so not in allowed_licenses"
            return None
        allowed, denied = _keys(self.allowed), _keys(self.denied)
        if license.spdx.lower() in denied:
            return f"its licence {shown} is in denied_licenses"
        if self.allowed and license.spdx.lower() in allowed:
            return None
        found = None if _LICENSE_REF.match(license.spdx) else _parsed(license.spdx)
        symbols = (
            _passes(found, allowed, denied)
            if found is not None
            else _symbol_passes(license.spdx.lower(), allowed, denied)
        )
        if symbols:
            return None
        where = "allowed_licenses" if self.allowed else "denied_licenses"
        verb = "is not in" if self.allowed else "falls under"
        return f"its licence {shown} {verb} {where}"


def _symbol_passes(key: str, allowed: frozenset[str], denied: frozenset[str]) -> bool:
    return key not in denied and (not allowed or key in allowed)


def _passes(found: Any, allowed: frozenset[str], denied: frozenset[str]) -> bool:
    """An expression passes: one side of an OR does (the user may pick it), both sides
    of an AND do; a licence WITH an exception goes by its licence."""
    if isinstance(found, OR):
        return any(_passes(arg, allowed, denied) for arg in found.args)
    if isinstance(found, AND):
        return all(_passes(arg, allowed, denied) for arg in found.args)
    if isinstance(found, LicenseWithExceptionSymbol):
        return _symbol_passes(found.license_symbol.key.lower(), allowed, denied)
    if isinstance(found, LicenseSymbol):
        return _symbol_passes(found.key.lower(), allowed, denied)
    return False
