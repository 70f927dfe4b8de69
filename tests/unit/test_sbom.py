"""The SBOM's pieces a functional run does not reach: a wheel the mirror built carries
its sdist as properties, licences take the CycloneDX form each needs, and a document
that does not validate (a licence id CycloneDX does not know, as a bundle's manifest
could carry) is an error, never output."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import date
from typing import Any

import pytest

from mirror.advisories.matching import Finding
from mirror.advisories.records import Advisory, Affected, Event, Severity
from mirror.core.config import Target
from mirror.core.config.advisories import Waiver
from mirror.core.licenses import License
from mirror.pypi.manifest import Manifest
from mirror.pypi.resolve import BuiltFrom, Wheel
from tfmirror.commands.sbom import document
from tfmirror.errors import SbomInvalid

BUILT = BuiltFrom(
    "farm-1.0.tar.gz", "5" * 64, "CPython 3.11.7", (), (), "2026-01-01T00:00:00Z", "uv"
)


def wheel(name: str, license: License, built: BuiltFrom | None = None) -> Wheel:
    filename = f"{name}-1.0-py3-none-any.whl"
    url = "" if built else f"https://files.example/{filename}"
    return Wheel(
        name,
        "1.0",
        filename,
        url,
        hashlib.sha256(name.encode()).hexdigest(),
        1,
        built_from=built,
        license=license,
    )


def sbom(*files: Wheel) -> dict[str, dict[str, object]]:
    manifest = Manifest(Target("3.11", "manylinux_2_28_x86_64"), ("x",), list(files))
    doc = json.loads(document("default", [manifest], [], "live"))
    return {c["name"]: c for c in doc["components"]}


def test_licence_forms_and_built_from_provenance() -> None:
    got = sbom(
        wheel("farm", License("MIT OR Apache-2.0", "MIT OR Apache-2.0", "expression"), BUILT),
        wheel("gemma", License("Gemma", "LicenseRef-Gemma", "license field")),
        wheel("odd", License("Our Own Terms", "", "license field")),
    )
    assert got["farm"]["licenses"] == [{"expression": "MIT OR Apache-2.0"}]
    assert got["gemma"]["licenses"] == [{"expression": "LicenseRef-Gemma"}]
    assert got["odd"]["licenses"] == [{"license": {"name": "Our Own Terms"}}]
    props = {p["name"]: p["value"] for p in got["farm"]["properties"]}  # type: ignore[attr-defined]
    assert props["tfmirror:built_from:sdist"] == "farm-1.0.tar.gz"
    assert props["tfmirror:built_from:sdist_sha256"] == "5" * 64
    assert "externalReferences" not in got["farm"]  # built here: no upstream URL


def test_a_document_that_does_not_validate_is_an_error() -> None:
    with pytest.raises(
        SbomInvalid, match=r"does not validate as CycloneDX 1\.6: .*Not-A-Licence-Id"
    ):
        sbom(wheel("bogus", License("x", "Not-A-Licence-Id", "expression")))


V31 = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"


def finding(ident: str, vector: str = "", score: float | None = None) -> Finding:
    severity = Severity.CRITICAL if score else Severity.UNKNOWN
    advisory = Advisory(ident, (), "2026-01-01T00:00:00Z", "bad", severity, score, vector)
    entry = Affected("farm", ((Event("introduced", "0"), Event("fixed", "1.1")),), ())
    return Finding("farm", "1.0", advisory, entry)


def vulns(waiver: Callable[[Finding], Waiver | None]) -> dict[str, dict[str, Any]]:
    manifest = Manifest(
        Target("3.11", "manylinux_2_28_x86_64"), ("x",), [wheel("farm", License("", "", ""))]
    )
    findings = [finding("GHSA-aaaa-bbbb-cccc", V31, 9.8), finding("PYSEC-2026-1")]
    doc = json.loads(document("default", [manifest], findings, "live", waiver))
    return {v["id"]: v for v in doc["vulnerabilities"]}


def test_ratings_carry_the_cvss_vector_and_a_waiver_makes_vex_not_affected() -> None:
    until = Waiver("PYSEC-2026-1", ("farm",), date(2027, 3, 1), "not reachable from our code")
    got = vulns(lambda f: until if f.advisory.id == "PYSEC-2026-1" else None)
    ghsa, pysec = got["GHSA-aaaa-bbbb-cccc"], got["PYSEC-2026-1"]
    assert ghsa["ratings"][0]["method"] == "CVSSv31"
    # CycloneDX names the version in `method`; the library drops it from the vector.
    assert ghsa["ratings"][0]["vector"] == V31.removeprefix("CVSS:3.1/")
    assert ghsa["ratings"][0]["score"] == 9.8
    assert ghsa["analysis"]["state"] == "exploitable"
    assert "vector" not in pysec["ratings"][0] and "method" not in pysec["ratings"][0]
    assert pysec["analysis"]["state"] == "not_affected"
    assert pysec["analysis"]["detail"] == "waived until 2027-03-01: not reachable from our code"
