"""Package licences end to end, as an operator meets them: a local upstream with four
wheels that declare their licence four ways (PEP 639 expression, classifier only, a
free-text License field, nothing), `tfmirror sync pypi`, `tfmirror audit --licenses`;
then upstream publishes a GPL release and [pypi] denied_licenses keeps it out: the
resolver steps around it and the manifest still holds the closure before it."""

from __future__ import annotations

import json
import re
from pathlib import Path

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from mirror.core.config import load_config
from mirror.core.storage import open_store
from mirror.pypi.manifest import load_all
from testkit.mirror_env import operator_config
from testkit.upstream import Upstream
from testkit.wheels import WheelSpec
from tests.functional.test_advisories import OsvExport
from tests.functional.test_bundle import tfmirror
from tests.support.osv_records import RECORDS, export
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


def lock_hashes(config: Path) -> set[str]:
    """The sha256 of every file `tfmirror lock` pins."""
    printed = tfmirror(config, "lock", "--env", "default")
    assert printed.returncode == 0, printed.stderr
    return set(re.findall(r"--hash=sha256:([0-9a-f]{64})", printed.stdout))


def check_sbom(text: str, files: dict[str, tuple[str, str]], locked: set[str]) -> None:
    """Valid CycloneDX 1.6 by the library's own validator; a component per file with
    its purl, sha256 (every one the lock pins), licence; tiny-lib's advisory on it."""
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    doc = json.loads(text)
    assert doc["specVersion"] == "1.6"
    parts = {c["purl"].split("file_name=")[1]: c for c in doc["components"]}
    assert set(parts) == set(files)
    hashes = {c["hashes"][0]["content"] for c in doc["components"]}
    assert hashes == {sha for sha, _ in files.values()} == locked
    expr = parts["expr_lib-1.0-py3-none-any.whl"]
    assert expr["purl"].startswith("pkg:pypi/expr-lib@1.0?")
    assert expr["licenses"] == [{"license": {"id": "MIT"}}]
    assert expr["externalReferences"][0]["type"] == "distribution"
    assert "licenses" not in parts["bare_lib-1.0-py3-none-any.whl"]
    (vuln,) = doc["vulnerabilities"]
    assert vuln["id"] == "GHSA-cfgp-2977-2fmm" and vuln["source"]["name"] == "OSV"
    assert vuln["ratings"][0]["score"] == 8.8 and vuln["ratings"][0]["severity"] == "high"
    assert vuln["analysis"]["state"] == "exploitable"
    assert [a["ref"] for a in vuln["affects"]] == [
        parts["tiny_lib-1.0-py3-none-any.whl"]["bom-ref"]
    ]


def test_licences_are_read_listed_and_a_denied_release_is_stepped_around(
    upstream: Upstream, tmp_path: Path
) -> None:
    for spec in FOUR:
        upstream.add(spec)
    upstream.add(WheelSpec("tiny-lib", "1.0"))  # GHSA-cfgp-2977-2fmm: fixed in 1.2.0
    names = [s.name for s in FOUR] + ["tiny-lib"]
    osv = OsvExport(export(RECORDS))
    extra = f'\n[advisories]\nsource = "{osv.url}/PyPI/all.zip"\n'
    config = operator_config(tmp_path, upstream.index_url, names, extra=extra)
    # [pypi]'s own keys, before its [[pypi.targets]] tables
    config.write_text(
        config.read_text().replace("build_backends = []\n", f"build_backends = []{POLICY}")
    )
    synced = tfmirror(config, "sync", "pypi", "--no-devpi")
    assert synced.returncode == 0, synced.stdout + synced.stderr
    with osv:
        fetched = tfmirror(config, "sync", "advisories")
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    before = closure(config)
    assert {name: licence for name, (_, licence) in before.items()} == {
        "tiny_lib-1.0-py3-none-any.whl": "unknown",
        "expr_lib-1.0-py3-none-any.whl": "MIT",
        "classified_lib-1.0-py3-none-any.whl": "BSD-3-Clause",
        "text_lib-1.0-py3-none-any.whl": "Apache-2.0",
        "bare_lib-1.0-py3-none-any.whl": "unknown",
    }

    audit = tfmirror(config, "audit", "--licenses", "--env", "default")
    assert audit.returncode == 0, audit.stdout + audit.stderr
    lines = [line.split() for line in audit.stdout.splitlines()]
    assert ["1", "MIT"] in lines and ["2", "unknown"] in lines and ["1", "Apache-2.0"] in lines
    assert "outside the licence policy: none" in audit.stdout
    as_json = tfmirror(config, "audit", "--licenses", "--json")
    (summary,) = json.loads(as_json.stdout)["licenses"]
    assert summary["environment"] == "default" and summary["counts"]["BSD-3-Clause"] == 1

    sbom_file = tmp_path / "default.cdx.json"
    sbom = tfmirror(config, "sbom", "--env", "default", "-o", str(sbom_file))
    assert sbom.returncode == 0, sbom.stdout + sbom.stderr
    check_sbom(sbom_file.read_text(), before, lock_hashes(config))
    held = tfmirror(config, "snapshot", "create", "first")
    assert held.returncode == 0, held.stderr
    frozen = tfmirror(config, "sbom", "--env", "default", "--snapshot", "first")
    assert frozen.returncode == 0, frozen.stderr
    check_sbom(frozen.stdout, before, lock_hashes(config))  # standard output by default

    loaded = load_config(str(config))
    web = create_app(loaded, open_store(loaded.storage)).test_client()
    (row,) = web.get("/api/status").get_json()["licenses"]
    assert row["counts"]["MIT"] == 1 and row["outside"] == []
    page = web.get("/").get_data(as_text=True)
    assert '<table id="licenses">' in page and "<code>Apache-2.0</code> 1" in page

    # A manifest the release before wrote has no licences: the next sync fills them in
    # from the METADATA blobs the store holds, and fetches nothing.
    store = open_store(load_config(str(config)).storage)
    (key,) = [k for k in store.list("manifests/pypi/") if k.endswith(".json")]
    doc = json.loads(store.get(key) or b"")
    for entry in doc["files"]:
        del entry["license"]
    store.put(key, json.dumps(doc).encode())
    assert set(closure(config).values()) == {(sha, "unknown") for sha, _ in before.values()}
    hits, served = upstream.file_hits(), upstream.bytes_served
    filled = tfmirror(config, "sync", "pypi", "--no-devpi")
    assert filled.returncode == 0 and "0 new" in filled.stdout, filled.stdout + filled.stderr
    assert closure(config) == before
    assert (upstream.file_hits(), upstream.bytes_served) == (hits, served)

    upstream.add(GPL_RELEASE)  # the newest text-lib is GPL now
    # [pypi] licenses is "block" by default: the resolver steps around it, and says so.
    kept = tfmirror(config, "sync", "pypi", "--no-devpi")
    assert kept.returncode == 0, kept.stdout + kept.stderr
    said = kept.stdout + kept.stderr
    assert "resolved around text-lib 2.0: its licence GPL-3.0-only is in denied_licenses" in said
    assert closure(config) == before  # text-lib 1.0 is still what is served
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
