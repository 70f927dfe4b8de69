"""Advisories end to end, as an operator runs them: a local upstream with two small
wheels, an OSV `all.zip` served over real HTTP on loopback, `tfmirror sync pypi` and
`tfmirror sync advisories`, then `tfmirror audit` of the environment and of the lock
`tfmirror lock` printed."""

from __future__ import annotations

import hashlib
import json
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from mirror.core.config import load_config
from mirror.core.journal import Journal
from mirror.core.storage import open_store
from testkit.mirror_env import operator_config
from testkit.servers import LoopbackHttpServer
from testkit.upstream import Upstream
from testkit.wheels import WheelSpec
from tests.functional.test_bundle import tfmirror
from tests.support.osv_records import RECORDS, export
from tfmirror.app import create_app


class OsvExport(LoopbackHttpServer):
    """OSV's bucket, as far as `PyPI/all.zip` goes; `body` is what it answers now."""

    def __init__(self, body: bytes) -> None:
        super().__init__()
        self.body = body
        self.gets = 0

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        self.gets += 1
        if req.path != "/PyPI/all.zip":
            req.send_response(404)
            req.send_header("Content-Length", "0")
            req.end_headers()
            return
        req.send_response(200)
        req.send_header("Content-Type", "application/zip")
        req.send_header("Content-Length", str(len(self.body)))
        req.end_headers()
        req.wfile.write(self.body)


def test_an_export_over_http_is_stored_journaled_and_audit_names_what_it_affects(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.add(WheelSpec("tiny-lib", "1.0"))  # GHSA-cfgp-2977-2fmm: fixed in 1.2.0
    upstream.add(WheelSpec("third-lib", "2.4"))  # past the last_affected 2.3.1
    good = export(RECORDS)
    with OsvExport(good) as osv:
        extra = f'\n[advisories]\nsource = "{osv.url}/PyPI/all.zip"\n'
        config = operator_config(
            tmp_path, upstream.index_url, ["tiny-lib", "third-lib"], extra=extra
        )
        synced = tfmirror(config, "sync", "pypi", "--no-devpi")
        assert synced.returncode == 0, synced.stderr
        first = tfmirror(config, "sync", "advisories")
        assert first.returncode == 0, first.stderr
        assert "new database: 4 PyPI advisories from 5 records" in first.stdout

        osv.body = b"PK\x05\x06 not really a zip"  # the next export is broken
        broken = tfmirror(config, "sync", "advisories")
        assert broken.returncode == 1 and "stays in force" in broken.stdout

    store = open_store(load_config(str(config)).storage)
    # Configured, the job is one of the status page's, with its own button and record.
    page = create_app(load_config(str(config)), store).test_client().get("/").get_data(True)
    assert 'data-job="advisories"' in page and "Sync advisories now" in page
    changes = [c for e in Journal(store).entries() for c in e.doc["changes"]]
    (entry,) = [c for c in changes if c["event"] == "advisories updated"]
    assert entry["sha256"] == hashlib.sha256(good).hexdigest() and entry["records"] == 4

    audit = tfmirror(config, "audit", "--env", "default")
    assert audit.returncode == 1, audit.stderr
    (line,) = [x for x in audit.stdout.splitlines() if "GHSA-cfgp-2977-2fmm" in x]
    assert "tiny-lib 1.0" in line and "high 8.8" in line and "fixed in 1.2.0" in line
    assert "third-lib" not in audit.stdout
    held = tfmirror(config, "snapshot", "create", "before-fix")
    assert held.returncode == 0, held.stderr
    frozen = tfmirror(config, "audit", "--snapshot", "before-fix")
    assert frozen.returncode == 1 and "GHSA-cfgp-2977-2fmm  tiny-lib 1.0" in frozen.stdout

    lock = tmp_path / "requirements.lock"
    printed = tfmirror(config, "lock", "--env", "default")
    assert printed.returncode == 0, printed.stderr
    lock.write_text(printed.stdout)
    by_lock = tfmirror(config, "audit", "--lock", str(lock), "--json")
    assert by_lock.returncode == 1, by_lock.stderr
    (findings,) = json.loads(by_lock.stdout)["scopes"].values()
    assert [
        (f["id"], f["project"], f["version"], f["severity"], f["fixed_in"]) for f in findings
    ] == [("GHSA-cfgp-2977-2fmm", "tiny-lib", "1.0", "high", ["1.2.0"])]
    above = tfmirror(config, "audit", "--lock", str(lock), "--min-severity", "critical")
    assert above.returncode == 0 and "GHSA-cfgp-2977-2fmm" in above.stdout

    lock.write_text("tiny-lib>=1.0\n")
    loose = tfmirror(config, "audit", "--lock", str(lock))
    assert loose.returncode == 2 and "is not pinned to one version" in loose.stderr
    assert len(loose.stderr.splitlines()) == 1
