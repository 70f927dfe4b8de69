"""`tfmirror sbom --env NAME`: a CycloneDX 1.6 document of what one environment offers
(live, or as a snapshot holds it): a component per file of every target's closure, with
its purl, sha256, upstream URL, licence and, for a wheel the mirror built, the sdist it
came from; and the advisories in force against them as its vulnerabilities (VEX). Made
with cyclonedx-python-lib and checked by its JSON schema validator before a byte is
written: a document that does not validate is an error (exit 1), never output."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from decimal import Decimal
from pathlib import Path

from cyclonedx.model import (
    ExternalReference,
    ExternalReferenceType,
    HashAlgorithm,
    HashType,
    Property,
    XsUri,
)
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.impact_analysis import ImpactAnalysisState
from cyclonedx.model.license import DisjunctiveLicense, LicenseExpression
from cyclonedx.model.vulnerability import (
    BomTarget,
    Vulnerability,
    VulnerabilityAnalysis,
    VulnerabilityRating,
    VulnerabilityScoreSource,
    VulnerabilitySeverity,
    VulnerabilitySource,
)
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL
from packaging.utils import canonicalize_name

from mirror.advisories.database import load_advisories
from mirror.advisories.errors import NoDatabase
from mirror.advisories.matching import Finding, Matcher
from mirror.core.config.advisories import Waiver
from mirror.core.licenses import License
from mirror.core.redact import bounded
from mirror.pypi.manifest import Manifest
from mirror.pypi.resolve import Wheel
from tfmirror.commands.audit import waived
from tfmirror.commands.common import EXIT_OK, closures
from tfmirror.errors import SbomInvalid
from tfmirror.parts import MirrorParts

PROPERTY = "tfmirror"  # the namespace of the document's own properties
OSV = VulnerabilitySource(name="OSV", url=XsUri("https://osv.dev"))


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", metavar="NAME", required=True, help="the environment")
    parser.add_argument("--snapshot", metavar="NAME", help="its closures as a snapshot holds them")
    parser.add_argument(
        "--format", choices=["cyclonedx-json"], default="cyclonedx-json", help="(the one so far)"
    )
    parser.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout)")


def purl(wheel: Wheel) -> PackageURL:
    """purl-spec's PyPI type: the normalised name; `file_name` picks the one file."""
    name = str(canonicalize_name(wheel.project))
    return PackageURL(
        "pypi", name=name, version=wheel.version, qualifiers={"file_name": wheel.filename}
    )


def licenses(found: License) -> list[LicenseExpression | DisjunctiveLicense]:
    """An SPDX id as `license.id`, an expression (or a LicenseRef) as `expression`, a name
    that is no SPDX id as `license.name`; an unknown licence is left out."""
    if found.spdx and " " not in found.spdx and not found.spdx.startswith("LicenseRef-"):
        return [DisjunctiveLicense(id=found.spdx)]
    if found.spdx:
        return [LicenseExpression(found.spdx)]
    return [DisjunctiveLicense(name=found.name)] if found.name else []


def _properties(wheel: Wheel, targets: list[str]) -> list[Property]:
    props = [Property(name=f"{PROPERTY}:target", value=t) for t in targets]
    props.append(Property(name=f"{PROPERTY}:license:from", value=wheel.licensed.source))
    if (built := wheel.built_from) is not None:
        props += [
            Property(name=f"{PROPERTY}:built_from:sdist", value=built.sdist),
            Property(name=f"{PROPERTY}:built_from:sdist_sha256", value=built.sdist_sha256),
            Property(name=f"{PROPERTY}:built_from:python", value=built.python),
            Property(name=f"{PROPERTY}:built_from:built_at", value=built.built_at),
        ]
    return props


def component(wheel: Wheel, targets: list[str]) -> Component:
    refs = []
    if wheel.url:
        refs.append(
            ExternalReference(type=ExternalReferenceType.DISTRIBUTION, url=XsUri(wheel.url))
        )
    return Component(
        name=str(canonicalize_name(wheel.project)),
        version=wheel.version,
        type=ComponentType.LIBRARY,
        bom_ref=f"{wheel.filename}#{wheel.sha256[:16]}",
        purl=purl(wheel),
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=wheel.sha256)],
        licenses=licenses(wheel.licensed),
        external_references=refs,
        properties=_properties(wheel, targets),
    )


def analysis(waiver: Waiver | None) -> VulnerabilityAnalysis:
    """VEX: an advisory in force affects what the environment offers (`exploitable`, the
    nearest CycloneDX state); one a waiver in force covers is `not_affected`, the waiver
    saying until when and why."""
    if waiver is None:
        return VulnerabilityAnalysis(state=ImpactAnalysisState.EXPLOITABLE)
    return VulnerabilityAnalysis(
        state=ImpactAnalysisState.NOT_AFFECTED,
        detail=f"waived until {waiver.until.isoformat()}: {waiver.reason}",
    )


# The CVSS version a vector names, as CycloneDX names the rating's method.
_METHODS = (
    ("CVSS:4", VulnerabilityScoreSource.CVSS_V4),
    ("CVSS:3.1", VulnerabilityScoreSource.CVSS_V3_1),
    ("CVSS:3", VulnerabilityScoreSource.CVSS_V3),
)


def rating(finding: Finding) -> VulnerabilityRating:
    advisory = finding.advisory
    method = None
    if advisory.vector:
        prefixed = (m for prefix, m in _METHODS if advisory.vector.startswith(prefix))
        method = next(prefixed, VulnerabilityScoreSource.CVSS_V2)
    return VulnerabilityRating(
        source=OSV,
        score=Decimal(str(advisory.score)) if advisory.score is not None else None,
        severity=VulnerabilitySeverity(advisory.severity.label),
        method=method,
        vector=advisory.vector or None,
    )


def vulnerabilities(
    findings: Iterable[Finding],
    refs: dict[tuple[str, str], list[str]],
    waiver: Callable[[Finding], Waiver | None],
) -> list[Vulnerability]:
    """One per advisory, affecting each file of each release it matched."""
    by_id: dict[str, list[Finding]] = {}
    for finding in findings:
        by_id.setdefault(finding.advisory.id, []).append(finding)
    out = []
    for ident, matched in sorted(by_id.items()):
        advisory = matched[0].advisory
        affects = [BomTarget(ref=r) for f in matched for r in refs[(f.project, f.version)]]
        out.append(
            Vulnerability(
                bom_ref=ident,
                id=ident,
                source=VulnerabilitySource(
                    name="OSV", url=XsUri(f"https://osv.dev/vulnerability/{ident}")
                ),
                description=advisory.summary or None,
                recommendation=(
                    f"upgrade to {', '.join(matched[0].fixed_in)}" if matched[0].fixed_in else None
                ),
                ratings=[rating(matched[0])],
                affects=affects,
                analysis=analysis(waiver(matched[0])),
            )
        )
    return out


def document(
    environment: str,
    manifests: list[Manifest],
    findings: list[Finding],
    version: str,
    waiver: Callable[[Finding], Waiver | None] = lambda finding: None,
) -> str:
    """The environment's SBOM, as CycloneDX 1.6 JSON, validated."""
    targets: dict[str, list[str]] = {}
    files: dict[str, Wheel] = {}
    for manifest in manifests:
        for wheel in manifest.files:
            files.setdefault(wheel.sha256, wheel)
            targets.setdefault(wheel.sha256, []).append(manifest.target.id)
    bom = Bom()
    bom.metadata.component = root = Component(
        name=environment,
        version=version,
        type=ComponentType.APPLICATION,
        bom_ref=f"environment:{environment}",
    )
    refs: dict[tuple[str, str], list[str]] = {}
    for sha, wheel in sorted(files.items(), key=lambda kv: kv[1].filename):
        made = component(wheel, targets[sha])
        bom.components.add(made)
        refs.setdefault((str(canonicalize_name(wheel.project)), wheel.version), []).append(
            str(made.bom_ref)
        )
    # The environment offers each file directly: what its index serves is its closure.
    bom.register_dependency(root, bom.components)
    for vulnerability in vulnerabilities(findings, refs, waiver):
        bom.vulnerabilities.add(vulnerability)
    text = JsonV1Dot6(bom).output_as_string(indent=1)
    problem = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    if problem is not None:
        why = getattr(problem.data, "message", str(problem)).splitlines()[0]
        raise SbomInvalid(f"the SBOM does not validate as CycloneDX 1.6: {bounded(why, 300)}")
    return text


def run(parts: MirrorParts, args: argparse.Namespace) -> int:
    ((environment, manifests),) = closures(
        parts.config, parts.store, args.env, args.snapshot
    ).items()
    releases = {(w.project, w.version) for m in manifests for w in m.files}
    try:
        _, records = load_advisories(parts.store)
        findings = Matcher(records.entries).match(releases)
    except NoDatabase as exc:
        findings = []
        print(f"tfmirror sbom: no vulnerabilities listed: {exc}", file=sys.stderr)
    version = f"snapshot {args.snapshot}" if args.snapshot else "live"
    text = document(environment, manifests, findings, version, waived(parts.config))
    if args.output:
        Path(args.output).write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
    return EXIT_OK
