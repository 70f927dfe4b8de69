"""What an advisory does to an environment (mirror.advisories.policy), and the config that
says it: modes, thresholds, waivers and their days, MAL- records, bad values."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from datetime import date
from pathlib import Path

import pytest

from mirror.advisories.matching import Finding, Matcher
from mirror.advisories.policy import Policy, Screen, expired, why_blocked
from mirror.advisories.records import Severity, parse_record
from mirror.core.config import Config, parse_config
from mirror.core.config.advisories import Waiver
from mirror.core.errors import ConfigError
from mirror.core.quarantine import add_rules, new_rule, read_quarantine
from mirror.core.storage import LocalStore
from mirror.pypi.closure_checks.advisories import withhold
from mirror.pypi.resolve import Wheel
from tests.support.osv_records import GHSA, LAST_AFFECTED, MALICIOUS, PYSEC

RECORDS = [parse_record(r, r["id"]) for r in (GHSA, PYSEC, LAST_AFFECTED, MALICIOUS)]
MATCHER = Matcher.of([r for r in RECORDS if r is not None])
DAY = date(2027, 3, 1)


def finding(project: str, version: str) -> Finding:
    (found,) = MATCHER.affecting(project, version)
    return found


def policy(mode: str, level: str = "high", *waivers: Waiver, today: date = DAY) -> Policy:
    return Policy("serving", mode, Severity.named(level), waivers, today)


def test_report_blocks_nothing_but_a_malicious_release() -> None:
    report = policy("report", "low")
    assert not report.blocks(finding("tiny-lib", "1.0"))  # high
    assert report.blocks(finding("evil-lib", "6.6.6"))  # MAL-: critical, everywhere


def test_block_holds_the_threshold_and_unknown_severity_counts_as_below_low() -> None:
    assert policy("block", "high").blocks(finding("tiny-lib", "1.0"))  # high 8.8
    assert not policy("block", "critical").blocks(finding("tiny-lib", "1.0"))
    assert not policy("block", "high").blocks(finding("third-lib", "2.3.1"))  # CVSS v4: low
    assert policy("block", "low").blocks(finding("third-lib", "2.3.1"))
    # PYSEC-2021-59 has no severity at all: reported, never blocked by a threshold.
    assert not policy("block", "low").blocks(finding("other-lib", "1.0"))


def test_a_waiver_covers_its_projects_by_id_or_alias_through_its_last_day() -> None:
    by_alias = Waiver("CVE-2023-40590", ("tiny-lib",), DAY, "not loaded from users")
    assert not policy("block", "high", by_alias).blocks(finding("tiny-lib", "1.0"))
    assert policy("block", "high", by_alias, today=date(2027, 3, 2)).blocks(
        finding("tiny-lib", "1.0")
    )
    elsewhere = Waiver("GHSA-cfgp-2977-2fmm", ("keras",), DAY, "other project")
    assert policy("block", "high", elsewhere).blocks(finding("tiny-lib", "1.0"))
    assert expired([by_alias, elsewhere], date(2027, 3, 2)) == [by_alias, elsewhere]
    assert expired([by_alias], DAY) == []


def test_a_malicious_release_is_named_as_such() -> None:
    assert (
        why_blocked(finding("evil-lib", "6.6.6"))
        == "MAL-2024-1234 (malicious; fixed in no fix listed)"
    )
    assert why_blocked(finding("tiny-lib", "1.0")) == "GHSA-cfgp-2977-2fmm (high; fixed in 1.2.0)"


def config(text: str) -> Config:
    return parse_config(tomllib.loads('[pypi]\nrequirements = ["a"]\n' + text), Path("."))


def test_environments_take_pypis_policy_unless_they_set_their_own() -> None:
    parsed = config(
        'advisories = "block"\nadvisory_min_severity = "medium"\n'
        '[pypi.environments.lab]\nrequirements = ["b"]\nadvisories = "report"\n'
    )
    rows = [(e.name, e.advisories, e.advisory_min_severity) for e in parsed.pypi.environments]
    assert rows == [("default", "block", "medium"), ("lab", "report", "medium")]
    default = config("")
    assert [(e.advisories, e.advisory_min_severity) for e in default.pypi.environments] == [
        ("report", "high")
    ]


WAIVER = '[advisories]\nsource = "all.zip"\n[[advisories.waivers]]\n'


def test_waivers_read_dates_and_names() -> None:
    parsed = config(
        WAIVER + 'id = "GHSA-x"\nprojects = ["Tiny_Lib"]\nuntil = 2027-03-01\nreason = "r"\n'
    )
    (w,) = parsed.advisories.waivers
    assert (w.projects, w.until) == (("tiny-lib",), DAY)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('advisories = "deny"\n', '[pypi] advisories = \'deny\': use "report" or "block"'),
        (
            'advisory_min_severity = "unknown"\n',
            "use one of low, medium, high, critical",
        ),
        (
            '[pypi.environments.x]\nrequirements = ["b"]\nadvisories = "on"\n',
            "[pypi.environments.x] advisories = 'on'",
        ),
        (
            WAIVER + 'id = "GHSA-x"\nprojects = ["k"]\nuntil = "soon"\nreason = "r"\n',
            "[advisories.waivers[0]] until = 'soon': give the last day it applies",
        ),
        (
            WAIVER + 'id = "GHSA-x"\nprojects = ["k"]\nreason = "r"\n',
            "[advisories.waivers[0]] until = '(missing)'",
        ),
        (
            WAIVER + 'id = "GHSA-x"\nprojects = []\nuntil = "2027-01-01"\nreason = "r"\n',
            "list the projects it covers",
        ),
        (
            WAIVER + 'id = "GHSA-x"\nprojects = ["k"]\nuntil = "2027-01-01"\n',
            "[advisories.waivers[0]] reason = '': say why",
        ),
        (
            WAIVER + 'id = "MAL-2024-1"\nprojects = ["k"]\nuntil = "2027-01-01"\nreason = "r"\n',
            "a malicious release cannot be waived",
        ),
        (
            WAIVER
            + 'id = "GHSA-x"\nprojects = ["k"]\nuntil = "2027-01-01"\nreason = "r"\nby = 1\n',
            "[advisories.waivers[0]] by: unknown key",
        ),
    ],
)
def test_a_bad_policy_or_waiver_is_one_line_naming_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config(text)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_cli_exits_2_with_one_line_on_a_bad_waiver(tmp_path: Path) -> None:
    path = tmp_path / "tfmirror.toml"
    path.write_text(
        '[pypi]\nrequirements = ["a"]\n'
        + WAIVER
        + 'id = "GHSA-x"\nprojects = ["k"]\nuntil = "next spring"\nreason = "r"\n'
    )
    proc = subprocess.run(
        [sys.executable, "-m", "tfmirror.cli", "--config", str(path), "audit"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("tfmirror: config error: ")
    assert line.endswith(
        "[advisories.waivers[0]] until = 'next spring': give the last day it applies, "
        'e.g. until = "2027-03-01"'
    )


def test_a_file_withheld_for_another_reason_stays_under_that_rule(tmp_path: Path) -> None:
    # Before: the advisory rule replaced upstream's (and upstream's it, next sync), one
    # journal entry a sync for as long as both held.
    store = LocalStore(tmp_path)
    name = "evil_lib-6.6.6-py3-none-any.whl"
    evil = Wheel("evil-lib", "6.6.6", name, f"https://files.example/{name}", "0" * 64, 10)
    add_rules(store, [new_rule(name, "removed upstream", "sync", False, "upstream")])
    screen = Screen(MATCHER, {"serving": policy("report")}, "db")
    assert withhold(store, screen, [evil], "sync") == []
    assert withhold(store, screen, [evil], "sync") == []
    (rule,) = read_quarantine(store).rules
    assert (rule.source, rule.reason) == ("upstream", "removed upstream")
    # Not withheld otherwise: the advisory's own rule, once.
    other = LocalStore(tmp_path / "other")
    assert [c["event"] for c in withhold(other, screen, [evil], "sync")] == ["withheld"]
    assert withhold(other, screen, [evil], "sync") == []
