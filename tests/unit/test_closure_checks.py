"""The closure checks a sync runs before it commits: registered in order, each made
for one sync, and the quarantine's refusal naming each file it objects to."""

from __future__ import annotations

from pathlib import Path

from mirror.core.config import parse_config
from mirror.core.quarantine import add_rules, new_rule
from mirror.core.storage import LocalStore
from mirror.core.upstream import ProjectPages
from mirror.pypi.closure_checks import CLOSURE_CHECKS, SyncView, Verdict
from mirror.pypi.closure_checks.quarantined import Quarantined
from mirror.pypi.closure_checks.upstream_removals import UpstreamRemovals
from mirror.pypi.resolve import Wheel


def wheel(project: str, version: str) -> Wheel:
    name = f"{project}-{version}-py3-none-any.whl"
    return Wheel(project, version, name, f"https://files.example/{name}", "0" * 64, 10)


def test_upstreams_word_is_read_before_the_quarantine_it_writes() -> None:
    assert CLOSURE_CHECKS.index(UpstreamRemovals) < CLOSURE_CHECKS.index(Quarantined)


def test_the_quarantine_refuses_a_closure_naming_each_quarantined_file(tmp_path: Path) -> None:
    config = parse_config({"pypi": {"upstream": ""}}, tmp_path)
    store = LocalStore(tmp_path / "store")
    add_rules(store, [new_rule("alpha==1.0", "CVE-1", "ops@host")])
    pages = ProjectPages("", 5.0)
    check = Quarantined(config.pypi)
    closure = [wheel("alpha", "1.0"), wheel("beta", "2.0")]
    view = SyncView(store, pages, closure, "ops@host", lambda: True)
    assert check.prepare(view) == []
    (finding,) = check.review("default/t", closure)
    assert finding.verdict is Verdict.REFUSE
    assert finding.reason == "alpha-1.0-py3-none-any.whl is quarantined (CVE-1)"
    assert check.review("default/t", [wheel("beta", "2.0")]) == []
