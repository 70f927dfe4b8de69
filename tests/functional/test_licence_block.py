"""Licences as policy, as a node meets it: a closure of wheels that declare their licence
four ways (PEP 639 expression, classifier only, a free-text License field, nothing) and a
project whose newer release is GPL, the older MIT. `denied_licenses = ["GPL-3.0-only"]`:
in "report" the GPL release is mirrored, pip installs it and `audit --licenses` names it;
in "block" the closure moves to the MIT release (the journal says what left and why) and
pip installs that from the environment's index; when every release that meets the
requirements is GPL, the target fails naming project, version and licence while the last
closure keeps being served. A local upstream, real devpi, the real front, real pip."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from mirror.core.config import Config, DevpiConfig
from mirror.core.storage import BlobStore
from mirror.pypi.manifest import load_manifest
from testkit.mirror_env import LINUX, make_config
from testkit.servers import make_venv, pip_install
from testkit.upstream import Upstream
from testkit.wheels import WheelSpec
from tests.functional.test_advisory_policy import (
    LINUX_ID,
    audit,
    changes,
    front,
    page_versions,
    sync,
    versions,
)
from tests.functional.test_cooldown import installed
from tests.functional.test_package_licenses import FOUR as SHAPES

# As the package-licence test's four, the free-text one written as packagers write it.
FOUR = [
    WheelSpec("text-lib", "1.0", headers=["License: 3-Clause BSD License"])
    if spec.name == "text-lib"
    else spec
    for spec in SHAPES
]
MIT_RELEASE = WheelSpec("gpl-lib", "1.0", headers=["License: MIT License"])
GPL_RELEASE = WheelSpec(
    "gpl-lib",
    "2.0",
    headers=["Classifier: License :: OSI Approved :: GNU General Public License v3 (GPLv3)"],
)
DENIED = "its licence GPL-3.0-only is in denied_licenses"


def licences(store: BlobStore) -> dict[str, str]:
    manifest = load_manifest(store, "fleet", LINUX_ID)
    assert manifest is not None
    return {w.project: w.licensed.shown() for w in manifest.files}


def with_mode(config: Config, mode: str, *requirements: str) -> Config:
    envs = tuple(
        replace(e, licenses=mode, requirements=requirements or e.requirements)
        for e in config.pypi.environments
    )
    return replace(config, pypi=replace(config.pypi, environments=envs))


def node_installs(config: Config, venv_dir: Path) -> str:
    """The gpl-lib version pip installs from the environment's index, in a clean venv."""
    with front(config) as base:
        venv = make_venv(venv_dir)
        proc = pip_install(venv, f"{base}/{config.devpi.user}/fleet/+simple/", "gpl-lib")
        assert proc.returncode == 0, proc.stderr
        return installed(venv, "gpl_lib")


def test_block_moves_the_closure_off_a_gpl_release_report_installs_and_audits_it(
    upstream: Upstream, devpi: DevpiConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for spec in [*FOUR, MIT_RELEASE, GPL_RELEASE]:
        upstream.add(spec)
    wanted = [s.name for s in FOUR] + ["gpl-lib"]
    config = make_config(
        tmp_path,
        upstream.index_url,
        devpi,
        [],
        environments={"fleet": {"requirements": wanted, "targets": [LINUX]}},
        pypi={
            "licenses": "report",
            "denied_licenses": ["GPL-3.0-only"],
            "allow_unknown_license": True,
        },
    )

    # report: mirrored and installed as it is, and named by the audit.
    report, store = sync(config)
    assert report.ok, report.failures
    assert versions(store, "fleet")["gpl-lib"] == "2.0"
    assert licences(store) == {
        "expr-lib": "MIT",
        "classified-lib": "BSD-3-Clause",
        "text-lib": "BSD-3-Clause",
        "bare-lib": "unknown",
        "gpl-lib": "GPL-3.0-only",
    }
    assert node_installs(config, tmp_path / "report-node") == "2.0"
    code, out = audit(config, store, capsys, "--licenses", "--env", "fleet")
    assert code == 1, out
    assert f"gpl-lib 2.0 (gpl_lib-2.0-py3-none-any.whl): {DENIED}" in out

    # block: the closure moves to the newest release inside the policy.
    blocking = with_mode(config, "block")
    report, store = sync(blocking)
    assert report.ok, report.failures
    assert versions(store, "fleet")["gpl-lib"] == "1.0"
    assert licences(store)["gpl-lib"] == "MIT"
    assert f"fleet/{LINUX_ID}: resolved around gpl-lib 2.0: {DENIED}" in report.notes
    (left,) = changes(store, "left for its licence")
    assert (left["project"], left["version"], left["licence"], left["reason"]) == (
        "gpl-lib",
        "2.0",
        "GPL-3.0-only",
        DENIED,
    )
    with front(blocking) as base:
        assert page_versions(base, blocking, "fleet", "gpl-lib") == ["1.0"]
    assert node_installs(blocking, tmp_path / "block-node") == "1.0"
    code, out = audit(blocking, store, capsys, "--licenses", "--env", "fleet")
    assert code == 0 and "outside the licence policy: none" in out, out

    # Every release that meets the requirements is GPL: the target fails naming it, and
    # the last closure is still what nodes install.
    pinned = with_mode(config, "block", *[s.name for s in FOUR], "gpl-lib>=2")
    report, store = sync(pinned)
    (failure,) = report.failures
    assert failure.name == f"fleet/{LINUX_ID}"
    assert f"gpl-lib 2.0: {DENIED}" in failure.reason
    assert versions(store, "fleet")["gpl-lib"] == "1.0"
    assert node_installs(pinned, tmp_path / "failed-node") == "1.0"
