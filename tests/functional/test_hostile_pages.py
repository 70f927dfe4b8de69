"""Upstream's project pages go by the rules files go by: each redirect's host checked,
a deadline, a cap on the bytes read before they are parsed, and a refusal that names
the project; odd JSON is refused or cleaned, never a crash after the commit."""

from __future__ import annotations

import json
import resource
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from mirror.core import upstream as upstream_module
from mirror.core.config import DEFAULT_ENVIRONMENT, DevpiConfig
from mirror.core.hosts import HostPolicy
from mirror.core.storage import open_store
from mirror.core.upstream import FetchPolicy, ProjectPages
from mirror.pypi.manifest import load_manifest
from mirror.pypi.sync import PypiSync
from testkit.mirror_env import make_config
from testkit.servers import LoopbackHttpServer
from testkit.upstream import Upstream
from testkit.wheels import WheelSpec

PEP691 = "application/vnd.pypi.simple.v1+json"


def send(req: BaseHTTPRequestHandler, body: bytes, length: int | None = -1) -> None:
    """`length`: the Content-Length declared (-1: the body's own; None: none, the body
    runs until the connection closes)."""
    req.send_response(200)
    req.send_header("Content-Type", PEP691)
    if length is not None:
        req.send_header("Content-Length", str(len(body) if length == -1 else length))
    else:
        req.close_connection = True
    req.end_headers()
    req.wfile.write(body)


def pages_of(upstream: Upstream) -> ProjectPages:
    policy = FetchPolicy(timeout=5, hosts=HostPolicy.trusting([upstream.index_url], "test"))
    return ProjectPages(upstream.index_url, 5, policy)


def test_a_redirect_to_an_internal_address_is_refused(upstream: Upstream) -> None:
    def redirect(req: BaseHTTPRequestHandler) -> None:
        req.send_response(302)
        req.send_header("Location", "http://169.254.169.254/latest/meta-data/")
        req.send_header("Content-Length", "0")
        req.end_headers()

    upstream.pages["metadata-thief"] = redirect
    pages = pages_of(upstream)
    assert pages.get("metadata-thief") is None
    assert "metadata-thief" in pages.problems["metadata-thief"]
    assert "169.254.169.254" in pages.problems["metadata-thief"]


def test_a_page_past_the_cap_is_refused_before_it_is_held(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(upstream_module, "MAX_PAGE", 4 * 1024 * 1024)
    filler = b'{"files": [], "x": "' + b"a" * (200 * 1024 * 1024) + b'"}'
    upstream.pages["declared"] = lambda req: send(req, b"{}", length=len(filler))
    upstream.pages["undeclared"] = lambda req: send(req, filler, length=None)
    pages = pages_of(upstream)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert pages.get("declared") is None and pages.get("undeclared") is None
    grew_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert "declares" in pages.problems["declared"]
    assert "runs past" in pages.problems["undeclared"]
    assert grew_mb < 50, f"reading a refused page grew RSS by {grew_mb:.0f} MB"


def test_a_trickling_page_stops_at_its_deadline(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(upstream_module, "PAGE_DEADLINE", 2.0)

    def trickle(req: BaseHTTPRequestHandler) -> None:
        req.send_response(200)
        req.send_header("Content-Type", PEP691)
        req.send_header("Content-Length", "1000")
        req.end_headers()
        for _ in range(30):
            req.wfile.write(b" ")
            req.wfile.flush()
            time.sleep(1)

    upstream.pages["slowpoke"] = trickle
    began = time.monotonic()
    pages = pages_of(upstream)
    assert pages.get("slowpoke") is None
    assert time.monotonic() - began < 10
    assert "deadline" in pages.problems["slowpoke"]


def test_nested_json_and_entries_without_names_are_refused_or_cleaned(
    upstream: Upstream,
) -> None:
    upstream.pages["deep"] = lambda req: send(req, b"[" * 200_000 + b"]" * 200_000)
    good = {"filename": "named-1.0-py3-none-any.whl", "url": "/files/named-1.0-py3-none-any.whl"}
    odd = [{"url": "/files/x.whl"}, {"filename": 7, "url": "/y"}, "text", {"filename": "n"}]
    doc = {"name": "named", "versions": [1, 2], "files": [*odd, good]}
    upstream.pages["named"] = lambda req: send(req, json.dumps(doc).encode())
    pages = pages_of(upstream)
    assert pages.get("deep") is None and "nests" in pages.problems["deep"]
    cleaned = pages.get("named")
    assert cleaned is not None and "named" not in pages.problems
    assert [e["filename"] for e in cleaned["files"]] == ["named-1.0-py3-none-any.whl"]
    assert "versions" not in cleaned


def test_a_sync_whose_page_lists_a_nameless_file_leaves_it_out_without_crashing(
    upstream: Upstream, devpi: DevpiConfig, tmp_path: Path
) -> None:
    # Before, the lag record's KeyError came after the commit and failed every run; then
    # uv, reading upstream itself, refused the whole page. Now every reader gets the page
    # as the policy cleaned it.
    upstream.add(WheelSpec("alpha", "1.0"))
    config = make_config(tmp_path, upstream.index_url, devpi, ["alpha"])
    store = open_store(config.storage)
    assert PypiSync(config, store, None).run().ok
    page = upstream._project_doc("alpha")
    assert page is not None
    page.pop("versions")  # optional (PEP 700): readers then go by the files
    page["files"].append({"url": "/files/nameless.whl"})  # type: ignore[attr-defined]
    upstream.pages["alpha"] = lambda req: send(req, json.dumps(page).encode())
    report = PypiSync(config, store, None).run()
    assert report.ok, report.failures
    served = load_manifest(store, DEFAULT_ENVIRONMENT, config.pypi.targets[0].id)
    assert served is not None
    assert [f.filename for f in served.files] == ["alpha-1.0-py3-none-any.whl"]


class _Thief(LoopbackHttpServer):
    """Where a hostile page sends its readers: it counts who came."""

    def __init__(self) -> None:
        super().__init__("127.0.0.9")
        self.visits: list[str] = []

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        self.visits.append(f"{req.headers.get('User-Agent', '')} {req.path}")
        send(req, b'{"meta": {"api-version": "1.0"}, "name": "beta", "files": []}')


def test_the_resolvers_own_reads_of_upstream_go_through_the_page_policy(
    upstream: Upstream, devpi: DevpiConfig, tmp_path: Path
) -> None:
    # uv resolved against upstream itself: it read every page with no host policy, cap
    # or deadline of ours, and followed beta's redirect to a host no one allowed.
    upstream.add(WheelSpec("alpha", "1.0", requires=["beta"]))
    upstream.add(WheelSpec("beta", "1.0"))
    agents: list[str] = []
    alpha = upstream._project_doc("alpha")

    def counted(req: BaseHTTPRequestHandler) -> None:
        agents.append(req.headers.get("User-Agent", ""))
        send(req, json.dumps(alpha).encode())

    with _Thief() as thief:

        def redirect(req: BaseHTTPRequestHandler) -> None:
            req.send_response(302)
            req.send_header("Location", f"{thief.url}/simple/beta/")
            req.send_header("Content-Length", "0")
            req.end_headers()

        upstream.pages["alpha"] = counted
        upstream.pages["beta"] = redirect
        config = make_config(tmp_path, upstream.index_url, devpi, ["alpha"])
        report = PypiSync(config, open_store(config.storage), None).run()
    assert thief.visits == []
    assert agents and not [a for a in agents if a.startswith("uv")], agents
    assert not report.ok
    reasons = " ".join(f.reason for f in report.failures)
    assert "beta" in reasons and "127.0.0.9" in reasons, reasons


@pytest.mark.parametrize(
    ("extra", "why"),
    [
        ({"../../../../tmp/x.pth": "import os"}, "leaves its folder"),
        ({"/etc/x": "x"}, "not a relative path"),
    ],
)
def test_a_downloaded_wheel_an_installer_would_refuse_is_refused_before_it_is_offered(
    upstream: Upstream, devpi: DevpiConfig, tmp_path: Path, extra: dict[str, str], why: str
) -> None:
    """Upstream's sha256 matches its bytes (it lists what it sends), but the zip inside
    names a path outside the install: the sync refuses the file and commits nothing."""
    upstream.add(WheelSpec("plain", "1.0"))
    upstream.add(WheelSpec("sneaky", "1.0", requires=["plain"], extra_files=extra))
    config = make_config(tmp_path, upstream.index_url, devpi, ["sneaky"])
    store = open_store(config.storage)

    report = PypiSync(config, store, None).run()

    failed = {f.name: f.reason for f in report.failures}
    assert why in failed.get("sneaky-1.0-py3-none-any.whl", ""), failed
    assert load_manifest(store, DEFAULT_ENVIRONMENT, config.pypi.targets[0].id) is None
