"""The one avoidance loop (mirror.pypi.avoidance) fed by both sources: advisories and,
where an environment's `licenses` mode is "block", licences. A resolver stand-in picks
each requirement's newest release the constraints allow, as uv would on a flat index."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any, cast

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from mirror.advisories.matching import Matcher
from mirror.advisories.policy import Policy, Screen
from mirror.advisories.records import Severity, parse_record
from mirror.core.config import Environment, PypiConfig, parse_config
from mirror.core.licenses import License
from mirror.core.upstream import ProjectPages
from mirror.pypi.advisory_avoidance import Advisories
from mirror.pypi.avoidance import ROUNDS, Source, avoid
from mirror.pypi.errors import ResolveError
from mirror.pypi.licence_avoidance import Licences
from mirror.pypi.package_licenses import license_of
from mirror.pypi.resolve import Wheel
from testkit.wheels import WheelSpec
from tests.support.osv_records import MALICIOUS

GPL = "Classifier: License :: OSI Approved :: GNU General Public License v3 (GPLv3)"
# Upstream: each release and the METADATA header its wheel declares its licence by.
RELEASES = {
    ("evil-lib", "6.6.5"): "License-Expression: MIT",
    ("evil-lib", "6.6.6"): "License-Expression: MIT",  # MAL-2024-1234
    ("gpl-lib", "1.0"): "License: MIT License",
    ("gpl-lib", "2.0"): GPL,
    ("gpl-lib", "3.0"): GPL,
}


class Upstream:
    """Resolves and licence reads, counted."""

    def __init__(self, releases: dict[tuple[str, str], str]) -> None:
        self.releases = releases
        self.resolves = 0
        self.read: list[tuple[str, str]] = []

    def wheel(self, project: str, version: str) -> Wheel:
        filename = f"{project.replace('-', '_')}-{version}-py3-none-any.whl"
        return Wheel(project, version, filename, f"https://up/{filename}", "0" * 64, 1)

    def resolve(self, env: Environment) -> list[Wheel]:
        self.resolves += 1
        refused = {tuple(c.split("!=")) for c in env.constraints if "!=" in c}
        picked = []
        for text in env.requirements:
            req = Requirement(text)
            allowed = [
                v
                for p, v in self.releases
                if p == req.name and req.specifier.contains(v) and (p, v) not in refused
            ]
            if not allowed:
                raise ResolveError(f"no release of {req.name} meets {text}")
            picked.append(self.wheel(req.name, max(allowed, key=Version)))
        return picked

    def license_of(self, wheel: Wheel) -> License:
        self.read.append((wheel.project, wheel.version))
        header = self.releases[(wheel.project, wheel.version)]
        return license_of(WheelSpec(wheel.project, wheel.version, headers=[header]).metadata())


class Pages:
    """Upstream's project pages, as the advisory source lists a project's releases."""

    def __init__(self, releases: dict[tuple[str, str], str]) -> None:
        self.releases = releases

    def get(self, project: str) -> dict[str, Any]:
        files = [
            {"filename": f"{p.replace('-', '_')}-{v}-py3-none-any.whl"}
            for p, v in self.releases
            if p == project
        ]
        return {"files": files}


def config(tmp_path: Path, mode: str, requirements: list[str]) -> PypiConfig:
    pypi = {
        "upstream": "",
        "denied_licenses": ["GPL-3.0-only"],
        "environments": {"strict": {"requirements": requirements, "targets": [], "licenses": mode}},
    }
    return parse_config({"pypi": pypi}, tmp_path).pypi


def sources(pypi: PypiConfig, upstream: Upstream) -> list[Source]:
    record = parse_record(MALICIOUS, MALICIOUS["id"])
    assert record is not None
    report = Policy("strict", "report", Severity.named("high"), (), date(2027, 3, 1))
    screen = Screen(Matcher.of([record]), {"strict": report}, "0" * 64)
    return [Advisories(screen), Licences(pypi, upstream.license_of)]


def run(pypi: PypiConfig, upstream: Upstream, releases: dict[tuple[str, str], str]) -> Any:
    (env,) = pypi.environments
    pages = cast(ProjectPages, Pages(releases))
    return avoid(sources(pypi, upstream), env, upstream.resolve(env), pages, upstream.resolve)


def test_one_loop_steps_around_an_advisory_and_a_licence_together(tmp_path: Path) -> None:
    pypi = config(tmp_path, "block", ["evil-lib", "gpl-lib"])
    upstream = Upstream(RELEASES)
    done = run(pypi, upstream, RELEASES)

    assert [(w.project, w.version) for w in done.wheels] == [
        ("evil-lib", "6.6.5"),
        ("gpl-lib", "1.0"),
    ]
    # 3.0 and the malicious release in the first round, 2.0 (picked next) in the second.
    assert upstream.resolves == 3
    assert [r.named() for r in done.left_out] == [
        "evil-lib 6.6.6: advisory MAL-2024-1234 (malicious; fixed in no fix listed)",
        "gpl-lib 3.0: its licence GPL-3.0-only is in denied_licenses",
        "gpl-lib 2.0: its licence GPL-3.0-only is in denied_licenses",
    ]
    assert done.left_out[1].journal == {
        "event": "left for its licence",
        "licence": "GPL-3.0-only",
        "reason": "its licence GPL-3.0-only is in denied_licenses",
    }
    assert "gpl-lib!=2.0" in done.environment.constraints
    # Only the releases a resolve picked were read, each once a round it was picked in.
    assert set(upstream.read) == {
        ("evil-lib", "6.6.6"),
        ("evil-lib", "6.6.5"),
        ("gpl-lib", "3.0"),
        ("gpl-lib", "2.0"),
        ("gpl-lib", "1.0"),
    }


def test_when_no_release_fits_the_target_fails_naming_project_version_and_licence(
    tmp_path: Path,
) -> None:
    pypi = config(tmp_path, "block", ["gpl-lib>=2"])
    with pytest.raises(ResolveError) as caught:
        run(pypi, Upstream(RELEASES), RELEASES)
    said = str(caught.value)
    assert "gpl-lib 2.0: its licence GPL-3.0-only is in denied_licenses" in said
    assert "gpl-lib 3.0: its licence GPL-3.0-only is in denied_licenses" in said
    assert said.endswith("the last closure stays")


def test_the_rounds_are_bounded(tmp_path: Path) -> None:
    many = {("gpl-lib", f"{n}.0"): GPL for n in range(2, 2 + ROUNDS + 1)}
    releases = {("gpl-lib", "1.0"): "License-Expression: MIT", **many}
    upstream = Upstream(releases)
    with pytest.raises(ResolveError) as caught:
        run(config(tmp_path, "block", ["gpl-lib"]), upstream, releases)
    # The newest ROUNDS releases are stepped around; the one after them is named.
    assert "(gpl-lib 2.0: its licence GPL-3.0-only is in denied_licenses)" in str(caught.value)
    assert upstream.resolves == 1 + ROUNDS


def test_report_mode_resolves_once_and_reads_no_licence(tmp_path: Path) -> None:
    upstream = Upstream(RELEASES)
    done = run(config(tmp_path, "report", ["gpl-lib"]), upstream, RELEASES)
    assert [(w.project, w.version) for w in done.wheels] == [("gpl-lib", "3.0")]
    assert done.left_out == [] and upstream.resolves == 1 and upstream.read == []
