"""Package licences end to end, as an operator meets them: a local upstream with four
wheels that declare their licence four ways (PEP 639 expression, classifier only, a
free-text License field, nothing), `tfmirror sync pypi`, `tfmirror audit --licenses`;
then upstream publishes a GPL release and [pypi] denied_licenses keeps it out: the
target fails naming it and the manifest still holds the closure before it."""

from __future__ import annotations

import json
from pathlib import Path

from mirror.core.config import load_config
from mirror.core.storage import open_store
from mirror.pypi.manifest import load_all
from testkit.mirror_env import operator_config
from testkit.upstream import Upstream
from testkit.wheels import WheelSpec
from tests.functional.test_bundle import tfmirror
from tfmirror.app import create_app

FOUR = [
    WheelSpec("expr-lib", "1.0", headers=["License-Expression: MIT"]),
    WheelSpec(
        "classified-lib", "1.0", headers=["Classifier: License :: OSI Approved :: BSD License"]
    ),
    WheelSpec("text-lib", "1.0", headers=["License: Apache Software License"]),
    WheelSpec("bare-lib", "1.0"),
]
GPL_RELEASE = WheelSpec(
    "text-lib",
    "2.0",
    headers=["Classifier: License :: OSI Approved :: GNU General Public License v3 (GPLv3)"],
)
POLICY = '\ndenied_licenses = ["GPL-3.0-only"]\nallow_unknown_license = true\n'


def closure(config: Path) -> dict[str, tuple[str, str]]:
    """The committed manifest's files: filename -> (sha256, licence)."""
    (manifest,) = load_all(open_store(load_config(str(config)).storage))
    return {w.filename: (w.sha256, w.licensed.shown()) for w in manifest.files}


def test_licences_are_read_listed_and_a_denied_release_fails_its_target(
    upstream: Upstream, tmp_path: Path
) -> None:
    for spec in FOUR:
        upstream.add(spec)
    names = [s.name for s in FOUR]
    config = operator_config(tmp_path, upstream.index_url, names)
    # [pypi]'s own keys, before its [[pypi.targets]] tables
    config.write_text(
        config.read_text().replace("build_backends = []\n", f"build_backends = []{POLICY}")
    )
    synced = tfmirror(config, "sync", "pypi", "--no-devpi")
    assert synced.returncode == 0, synced.stdout + synced.stderr
    before = closure(config)
    assert {name: licence for name, (_, licence) in before.items()} == {
        "expr_lib-1.0-py3-none-any.whl": "MIT",
        "classified_lib-1.0-py3-none-any.whl": "BSD-3-Clause",
        "text_lib-1.0-py3-none-any.whl": "Apache-2.0",
        "bare_lib-1.0-py3-none-any.whl": "unknown",
    }

    audit = tfmirror(config, "audit", "--licenses", "--env", "default")
    assert audit.returncode == 0, audit.stdout + audit.stderr
    lines = [line.split() for line in audit.stdout.splitlines()]
    assert ["1", "MIT"] in lines and ["1", "unknown"] in lines and ["1", "Apache-2.0"] in lines
    assert "outside the licence policy: none" in audit.stdout
    as_json = tfmirror(config, "audit", "--licenses", "--json")
    (summary,) = json.loads(as_json.stdout)["licenses"]
    assert summary["environment"] == "default" and summary["counts"]["BSD-3-Clause"] == 1

    loaded = load_config(str(config))
    web = create_app(loaded, open_store(loaded.storage)).test_client()
    (row,) = web.get("/api/status").get_json()["licenses"]
    assert row["counts"]["MIT"] == 1 and row["outside"] == []
    page = web.get("/").get_data(as_text=True)
    assert '<table id="licenses">' in page and "<code>Apache-2.0</code> 1" in page

    upstream.add(GPL_RELEASE)  # the newest text-lib is GPL now
    refused = tfmirror(config, "sync", "pypi", "--no-devpi")
    assert refused.returncode == 1
    said = refused.stdout + refused.stderr
    assert "text-lib 2.0 (text_lib-2.0-py3-none-any.whl): its licence GPL-3.0-only" in said
    assert "denied_licenses" in said
    assert closure(config) == before  # the last closure is still what is served
    audit = tfmirror(config, "audit", "--licenses")
    assert audit.returncode == 0 and "GPL" not in audit.stdout
    # Denying what is already served shows on the page and fails audit, by name.
    strict = config.read_text().replace('["GPL-3.0-only"]', '["Apache-2.0"]')
    config.write_text(strict)
    audit = tfmirror(config, "audit", "--licenses")
    assert audit.returncode == 1
    assert "text-lib 1.0 (text_lib-1.0-py3-none-any.whl): its licence Apache-2.0" in audit.stdout
    loaded = load_config(str(config))
    web = create_app(loaded, open_store(loaded.storage)).test_client()
    page = web.get("/").get_data(as_text=True)
    assert '<span class="failed">text-lib 1.0 (text_lib-1.0-py3-none-any.whl)' in page
