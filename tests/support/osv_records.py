"""Advisory records in OSV's real schema (1.x), shaped after real ones, and `all.zip`
exports built from them: the fixtures the advisories tests and bench share."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

# After GHSA-cfgp-2977-2fmm (a CVSS v3 vector, ECOSYSTEM range, database_specific).
GHSA: dict[str, Any] = {
    "schema_version": "1.6.0",
    "id": "GHSA-cfgp-2977-2fmm",
    "modified": "2024-02-16T08:18:05Z",
    "published": "2023-08-21T18:30:52Z",
    "aliases": ["CVE-2023-40590"],
    "summary": "Remote code execution when loading a crafted archive",
    "details": "Loading an untrusted file runs its code.",
    "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:H"}],
    "affected": [
        {
            "package": {"ecosystem": "PyPI", "name": "Tiny_Lib", "purl": "pkg:pypi/tiny-lib"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.2.0"}]}],
            "database_specific": {"source": "https://github.com/github/advisory-database"},
        }
    ],
    "references": [{"type": "ADVISORY", "url": "https://nvd.nist.gov/vuln/detail/CVE-2023-40590"}],
    "database_specific": {
        "cwe_ids": ["CWE-94"],
        "github_reviewed": True,
        "severity": "HIGH",
    },
}

# After PYSEC-2021-59: only an explicit `versions` list (no severity at all), with a
# legacy version PEP 440 cannot read, as some PYSEC records carry.
PYSEC: dict[str, Any] = {
    "id": "PYSEC-2021-59",
    "modified": "2021-03-18T17:15:00Z",
    "aliases": ["CVE-2021-27291"],
    "details": "Quadratic regex in a lexer.",
    "affected": [
        {
            "package": {"ecosystem": "PyPI", "name": "other-lib", "purl": "pkg:pypi/other-lib"},
            "versions": ["0.9", "1.0", "1.0.1", "0.1dev-r1234"],
        }
    ],
}

# After a GHSA that names a last_affected version (no fix released), with a CVSS v4 vector.
LAST_AFFECTED: dict[str, Any] = {
    "schema_version": "1.6.0",
    "id": "GHSA-4v5p-v5h9-6xjx",
    "modified": "2024-11-01T12:00:00Z",
    "aliases": ["CVE-2024-99999"],
    "summary": "Path traversal in extract",
    "severity": [
        {
            "type": "CVSS_V4",
            "score": "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:L/VI:N/VA:N/SC:N/SI:N/SA:N",
        }
    ],
    "affected": [
        {
            "package": {"ecosystem": "PyPI", "name": "third.lib"},
            "ranges": [
                {
                    "type": "ECOSYSTEM",
                    "events": [{"introduced": "2.0"}, {"last_affected": "2.3.1"}],
                }
            ],
        }
    ],
}

# A withdrawn record: it would match tiny-lib 1.0 but must be ignored.
WITHDRAWN: dict[str, Any] = {
    "id": "GHSA-wwww-xxxx-yyyy",
    "modified": "2024-03-01T00:00:00Z",
    "withdrawn": "2024-03-01T00:00:00Z",
    "summary": "Withdrawn: not a vulnerability",
    "affected": [
        {
            "package": {"ecosystem": "PyPI", "name": "tiny-lib"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}],
        }
    ],
}

# After the OpenSSF malicious-packages records OSV publishes as MAL-: no severity given.
MALICIOUS: dict[str, Any] = {
    "schema_version": "1.5.0",
    "id": "MAL-2024-1234",
    "modified": "2024-05-02T10:00:00Z",
    "summary": "Malicious code in evil-lib (PyPI)",
    "affected": [
        {
            "package": {"ecosystem": "PyPI", "name": "evil-lib"},
            "versions": ["6.6.6"],
            "database_specific": {
                "malicious-packages-origins": [{"source": "ossf-package-analysis"}]
            },
        }
    ],
    "database_specific": {"malicious-packages-origins": [{"source": "ossf-package-analysis"}]},
}

RECORDS = [GHSA, PYSEC, LAST_AFFECTED, WITHDRAWN, MALICIOUS]


def export(records: list[dict[str, Any]], extra: dict[str, bytes] | None = None) -> bytes:
    """An all.zip as OSV lays it out: one `<id>.json` per record, deflated."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for record in records:
            zf.writestr(f"{record['id']}.json", json.dumps(record))
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return out.getvalue()
