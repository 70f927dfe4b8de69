"""A package file's licence, read from its core metadata (METADATA) at sync: PEP 639's
`License-Expression` first (SPDX by definition); else the `License` field when it reads
as SPDX or as a name packagers commonly write ("MIT License", "Apache 2.0", "BSD");
else the trove classifiers (`License :: OSI Approved :: MIT License`); else the field's
text as given, with no SPDX id; else unknown. Everything is normalised through
mirror.core.licenses, which also holds the policy files are checked against."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesParser

from mirror.core.licenses import License, LicensePolicy, spdx_of
from mirror.pypi.resolve import Wheel

# Where a package's licence was read (License.source); "unknown" is mirror.core.licenses'.
FROM_EXPRESSION = "expression"
FROM_LICENSE_FIELD = "license field"
FROM_CLASSIFIER = "classifier"

# The last segment of PyPI's licence classifiers, and the SPDX id each names. "BSD
# License" names no one BSD: it is read as BSD-3-Clause, the one most projects that use
# it ship (numpy, scipy, scikit-learn); a policy that must tell them apart needs PEP 639.
CLASSIFIERS = {
    "mit license": "MIT",
    "mit no attribution license (mit-0)": "MIT-0",
    "apache software license": "Apache-2.0",
    "bsd license": "BSD-3-Clause",
    "isc license (iscl)": "ISC",
    "python software foundation license": "PSF-2.0",
    "mozilla public license 2.0 (mpl 2.0)": "MPL-2.0",
    "the unlicense (unlicense)": "Unlicense",
    "boost software license 1.0 (bsl-1.0)": "BSL-1.0",
    "zope public license": "ZPL-2.1",
    "eclipse public license 2.0 (epl-2.0)": "EPL-2.0",
    "historical permission notice and disclaimer (hpnd)": "HPND",
    "cc0 1.0 universal (cc0 1.0) public domain dedication": "CC0-1.0",
    "gnu general public license v2 (gplv2)": "GPL-2.0-only",
    "gnu general public license v2 or later (gplv2+)": "GPL-2.0-or-later",
    "gnu general public license v3 (gplv3)": "GPL-3.0-only",
    "gnu general public license v3 or later (gplv3+)": "GPL-3.0-or-later",
    "gnu lesser general public license v2 (lgplv2)": "LGPL-2.0-only",
    "gnu lesser general public license v2 or later (lgplv2+)": "LGPL-2.0-or-later",
    "gnu lesser general public license v3 (lgplv3)": "LGPL-3.0-only",
    "gnu lesser general public license v3 or later (lgplv3+)": "LGPL-3.0-or-later",
    "gnu affero general public license v3": "AGPL-3.0-only",
    "gnu affero general public license v3 or later (agplv3+)": "AGPL-3.0-or-later",
}

# What packagers write in the `License` field that is no SPDX id, by lower case.
FIELD_NAMES = {
    **CLASSIFIERS,
    "bsd": "BSD-3-Clause",
    "new bsd": "BSD-3-Clause",
    "new bsd license": "BSD-3-Clause",
    "3-clause bsd": "BSD-3-Clause",
    "modified bsd": "BSD-3-Clause",
    "revised bsd": "BSD-3-Clause",
    "2-clause bsd": "BSD-2-Clause",
    "bsd 3-clause": "BSD-3-Clause",
    "bsd-3": "BSD-3-Clause",
    "simplified bsd": "BSD-2-Clause",
    "bsd 2-clause": "BSD-2-Clause",
    "apache": "Apache-2.0",
    "apache 2": "Apache-2.0",
    "apache-2": "Apache-2.0",
    "apache license 2.0": "Apache-2.0",
    "apache license, version 2.0": "Apache-2.0",
    "apache license version 2.0": "Apache-2.0",
    "apache software license 2.0": "Apache-2.0",
    "apache v2": "Apache-2.0",
    "apache license v2": "Apache-2.0",
    "apache license v2.0": "Apache-2.0",
    "mozilla public license 2.0": "MPL-2.0",
    "psf": "PSF-2.0",
    "psf license": "PSF-2.0",
    "mpl 2.0": "MPL-2.0",
    "mpl-2": "MPL-2.0",
    "gplv2": "GPL-2.0-only",
    "gplv3": "GPL-3.0-only",
    "gpl v3": "GPL-3.0-only",
    "gnu gplv3": "GPL-3.0-only",
    "gnu gpl v3": "GPL-3.0-only",
    "gpl v2": "GPL-2.0-only",
    "gplv3+": "GPL-3.0-or-later",
    "lgplv3": "LGPL-3.0-only",
    "lgplv3+": "LGPL-3.0-or-later",
    "public domain": "LicenseRef-Public-Domain",
}
SHOWN = 200  # of a `License` field that holds a whole licence text
# "The MIT License", "3-Clause BSD License", "ISC License": a name with its article or
# the word licence around it reads as the name without them, when that reads at all.
_WRAPPING = re.compile(r"^(?:the\s+)?(.+?)(?:\s+licen[cs]e)?$", re.IGNORECASE)


def _field(headers: Message, name: str) -> str:
    value = headers.get(name)
    return " ".join(str(value).split()) if value is not None else ""


def _from_classifiers(classifiers: list[str]) -> License | None:
    named = [c for c in classifiers if c.startswith("License ::")]
    ids = [spdx for c in named if (spdx := CLASSIFIERS.get(c.rsplit("::", 1)[-1].strip().lower()))]
    if not ids:
        return None
    # Two licence classifiers mean the user may pick either: dual licensing.
    return License("; ".join(named), " OR ".join(dict.fromkeys(ids)), FROM_CLASSIFIER)


def _field_spdx(text: str) -> str:
    """The SPDX id the `License` field's text names, "" where none reads."""
    bare = _WRAPPING.match(text)
    for name in dict.fromkeys([text, bare.group(1) if bare else text]):
        spdx = FIELD_NAMES.get(name.lower()) or spdx_of(name)
        if spdx:
            return spdx
    return ""


def license_of(metadata: bytes) -> License:
    """The licence a file's METADATA declares."""
    headers = BytesParser().parsebytes(metadata, headersonly=True)
    expression = _field(headers, "License-Expression")
    if expression:
        return License(expression, spdx_of(expression), FROM_EXPRESSION)
    text = _field(headers, "License")
    spdx = _field_spdx(text) if text else ""
    if spdx:
        return License(text, spdx, FROM_LICENSE_FIELD)
    classified = _from_classifiers([str(c) for c in headers.get_all("Classifier") or []])
    if classified is not None:
        return classified
    if text and text.lower() not in ("unknown", "none", "unknown license"):
        name = text if len(text) <= SHOWN else text[: SHOWN - 1] + "…"
        return License(name, "", FROM_LICENSE_FIELD)
    return License.unknown("its metadata names no licence")


def outside_policy(files: Iterable[Wheel], policy: LicensePolicy) -> list[tuple[Wheel, str]]:
    """Each file `policy` refuses, and why (the closure check, `audit`, the page)."""
    return [(w, why) for w in files if (why := policy.refusal(w.licensed)) is not None]


@dataclass(frozen=True)
class LicenseSummary:
    """One environment's licences, as `audit` and the status page show them: files per
    licence (its SPDX id, else the name given, else "unknown") and those outside policy."""

    environment: str
    counts: dict[str, int]
    outside: list[str]  # "project version (filename): why"

    @classmethod
    def of(cls, environment: str, files: Iterable[Wheel], policy: LicensePolicy) -> LicenseSummary:
        unique = list({w.sha256: w for w in files}.values())
        counts = Counter(w.licensed.shown() for w in unique)
        outside = [
            f"{w.project} {w.version} ({w.filename}): {why}"
            for w, why in outside_policy(sorted(unique, key=lambda w: w.filename), policy)
        ]
        return cls(
            environment, dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))), outside
        )
