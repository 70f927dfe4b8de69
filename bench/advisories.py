"""Bench: advisories at OSV's real size, on the local store.

Generates an `all.zip` of 20,000 PyPI records in OSV's schema (ECOSYSTEM ranges with
introduced/fixed/last_affected, explicit version lists, CVSS v3 vectors, some withdrawn
and MAL- records) over 5,000 projects, syncs it as the job does, then times:
  - matching 10 environments of 300 files each: the parsed records read from the store,
    indexed, matched (target < 2 s);
  - `tfmirror audit --lock` of a 300-line lock from a cold process (target < 1 s);
against a peer in the same run: a plain Python loop over the same export's records
(every record read from the zip and checked against each environment's files), in
process and from a cold process. pip-audit and osv-scanner do not install offline here.

    python -m bench.advisories [--records 20000]
"""

from __future__ import annotations

import argparse
import io
import json
import random
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterable
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import Version

from mirror.advisories.database import forget_last_read, load_advisories
from mirror.advisories.matching import Matcher
from mirror.advisories.sync import sync_advisories
from mirror.core.config.load import parse_config
from mirror.core.storage import LocalStore

PROJECTS = 5000
ENVIRONMENTS, FILES = 10, 300
VECTOR = "CVSS:3.1/AV:N/AC:L/PR:N/UI:{ui}/S:U/C:H/I:{i}/A:N"


def record(n: int, rng: random.Random) -> dict[str, object]:
    project = f"project-{rng.randrange(PROJECTS)}"
    major = rng.randrange(1, 6)
    kind = rng.random()
    affected: dict[str, object] = {"package": {"ecosystem": "PyPI", "name": project}}
    if kind < 0.6:
        end = {"fixed": f"{major}.{rng.randrange(1, 9)}.0"}
        affected["ranges"] = [{"type": "ECOSYSTEM", "events": [{"introduced": f"{major}.0"}, end]}]
    elif kind < 0.75:
        affected["ranges"] = [
            {
                "type": "ECOSYSTEM",
                "events": [{"introduced": "0"}, {"last_affected": f"{major}.2.1"}],
            }
        ]
    else:
        affected["versions"] = [f"{major}.{m}.{p}" for m in range(3) for p in range(3)]
    doc: dict[str, object] = {
        "schema_version": "1.6.0",
        "id": f"MAL-2026-{n}" if n % 97 == 0 else f"GHSA-bench-{n:05d}",
        "modified": "2026-11-01T00:00:00Z",
        "aliases": [f"CVE-2026-{n}"],
        "summary": f"advisory {n}",
        "affected": [affected],
    }
    if rng.random() < 0.7:
        vector = VECTOR.format(ui=rng.choice("NR"), i=rng.choice("NLH"))
        doc["severity"] = [{"type": "CVSS_V3", "score": vector}]
    if n % 50 == 0:
        doc["withdrawn"] = "2026-11-02T00:00:00Z"
    return doc


def make_export(records: int) -> bytes:
    rng = random.Random(36)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for n in range(records):
            doc = record(n, rng)
            zf.writestr(f"{doc['id']}.json", json.dumps(doc))
    return out.getvalue()


def closures() -> list[set[tuple[str, str]]]:
    rng = random.Random(7)
    scopes = []
    for _ in range(ENVIRONMENTS):
        scope: set[tuple[str, str]] = set()
        while len(scope) < FILES:
            project = f"project-{rng.randrange(PROJECTS)}"
            scope.add((project, f"{rng.randrange(1, 6)}.{rng.randrange(4)}.1"))
        scopes.append(scope)
    return scopes


def _affects(entry: dict[str, object], version: Version) -> bool:
    """The peer's own evaluation: what someone writes in a loop, without an index."""
    for listed in entry.get("versions", []):  # type: ignore[attr-defined]
        if Version(listed) == version:
            return True
    for rng in entry.get("ranges", []):  # type: ignore[attr-defined]
        affected = False
        events = sorted(
            rng["events"],
            key=lambda e: Version("0") if "0" in e.values() else Version(next(iter(e.values()))),
        )
        for event in events:
            ((kind, text),) = event.items()
            bound = Version(text)
            if kind == "introduced" and version >= bound:
                affected = True
            elif (kind == "fixed" and version >= bound) or (
                kind == "last_affected" and version > bound
            ):
                affected = False
        if affected:
            return True
    return False


def peer(export: Path, scopes: Iterable[set[tuple[str, str]]]) -> int:
    """A plain loop over every record of the export, for each scope."""
    with zipfile.ZipFile(export) as zf:
        docs = [json.loads(zf.read(name)) for name in zf.namelist()]
    found = 0
    for scope in scopes:
        versions: dict[str, list[Version]] = {}
        for project, version in scope:
            versions.setdefault(canonicalize_name(project), []).append(Version(version))
        for doc in docs:
            if doc.get("withdrawn"):
                continue
            for entry in doc["affected"]:
                name = canonicalize_name(entry["package"]["name"])
                found += sum(_affects(entry, v) for v in versions.get(name, []))
    return found


def ours(store: LocalStore, scopes: Iterable[set[tuple[str, str]]]) -> int:
    forget_last_read()  # a sync reads the records once: time that read, not the kept copy
    _, records = load_advisories(store)
    matcher = Matcher(records.entries)
    return sum(len(matcher.match(scope)) for scope in scopes)


def timed(fn: object, *args: object) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(3):
        start = time.perf_counter()
        result = fn(*args)  # type: ignore[operator]
        best = min(best, time.perf_counter() - start)
    return best, result


def cold(*argv: str) -> tuple[float, int]:
    best, code = float("inf"), 0
    for _ in range(3):
        start = time.perf_counter()
        code = subprocess.run(argv, capture_output=True, check=False).returncode
        best = min(best, time.perf_counter() - start)
    return best, code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-advisories-") as tmp:
        work = Path(tmp)
        export = work / "all.zip"
        start = time.perf_counter()
        export.write_bytes(make_export(args.records))
        print(
            f"export: {args.records} records, {export.stat().st_size / 2**20:.1f} MiB "
            f"(made in {time.perf_counter() - start:.1f} s)"
        )
        toml = work / "tfmirror.toml"
        toml.write_text(f'[storage]\npath = "data"\n[advisories]\nsource = "{export}"\n')
        config = parse_config(
            {"storage": {"path": str(work / "data")}, "advisories": {"source": str(export)}},
            work,
        )
        store = LocalStore(work / "data")
        start = time.perf_counter()
        report = sync_advisories(config, store, "bench")
        print(
            f"sync (read, check, parse, score): {time.perf_counter() - start:.2f} s; "
            f"{report.summary()}"
        )

        scopes = closures()
        ours_s, ours_n = timed(ours, store, scopes)
        peer_s, peer_n = timed(peer, export, scopes)
        assert ours_n == peer_n, f"the peer found {peer_n}, tfmirror {ours_n}"
        print(
            f"match {ENVIRONMENTS} environments x {FILES} files ({ours_n} findings): "
            f"tfmirror {ours_s:.3f} s, plain loop {peer_s:.3f} s, "
            f"ratio {peer_s / ours_s:.1f}x (target < 2 s)"
        )

        # The status page matches every environment on each scrape, in a process that
        # keeps the records it read last: a scrape after the first reads no blob.
        first_s, _ = timed(ours, store, scopes)
        load_advisories(store)
        kept_s, _ = timed(
            lambda: sum(len(Matcher(load_advisories(store)[1].entries).match(s)) for s in scopes)
        )
        print(f"status page's matching: first scrape {first_s:.3f} s, later scrapes {kept_s:.3f} s")

        lock = work / "requirements.lock"
        lock.write_text(
            "".join(f"{p}=={v} \\\n    --hash=sha256:{'0' * 64}\n" for p, v in sorted(scopes[0]))
        )
        lines = len(scopes[0])
        audit_s, code = cold(
            sys.executable,
            "-m",
            "tfmirror.cli",
            "--config",
            str(toml),
            "audit",
            "--lock",
            str(lock),
        )
        peer_code = (
            "import sys; from bench.advisories import peer; from mirror.pypi.lockfile import "
            "read_lock; from pathlib import Path; p = Path(sys.argv[2]); "
            "print(peer(Path(sys.argv[1]), [set(read_lock(p.read_text(), str(p)))]))"
        )
        peer_cold, _ = cold(sys.executable, "-c", peer_code, str(export), str(lock))
        print(
            f"audit --lock of {lines} pins, cold process (exit {code}): tfmirror "
            f"{audit_s:.3f} s, plain loop {peer_cold:.3f} s, ratio "
            f"{peer_cold / audit_s:.1f}x (target < 1 s)"
        )


if __name__ == "__main__":
    main()
