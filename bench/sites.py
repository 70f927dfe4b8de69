"""Bench: a site following a centre over an emulated WAN link (testkit.netns: two network
namespaces, a one-way delay and a rate limit), against curl over the same link.

  pull  From the end of a sync at the centre (its commit) until the site (`tfmirror up`,
        pulling every second) serves the largest new file on its live index (the manifest
        committed), against `curl --parallel` (4 at a time, as the pull) of the same blobs
        from the centre's follow API over the same link, written to disk, in the same run.
        Prints both and the ratio (goal <= 1.1x).
  idle  The follow loop's cost when nothing changes: over `--idle-seconds`, the requests
        the centre answered (its gunicorn access log) and the bytes it sent on the link
        (the link's counters, TCP and all), as requests per minute and bytes per hour.

The parts are a seam: `--part` picks which run, and a part is one function of the lab
(`PARTS`); "many sites x clients through edge caches" joins as one more.

    python -m bench.sites [--part pull,idle] [--size-mb 200] [--files 20] [--delay-ms 20]
                          [--rate-mbit 100] [--interval 1] [--idle-seconds 60] [--tensorflow]

The default set is generated wheels totalling `--size-mb` (incompressible); with
`--tensorflow` the centre first syncs the TensorFlow closure from PyPI (636 MB; this
machine's own network; the
timed span starts at its end, as for the generated set). Needs root (namespaces).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from bundle.contents import read_manifests, referenced
from mirror.core.config import load_config
from mirror.core.storage import LocalStore
from mirror.pypi.manifest import load_all
from testkit.netns import Lab, unavailable
from testkit.servers import free_port
from testkit.upstream import Upstream
from testkit.wheels import WheelSpec

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Sites:
    """The lab a part runs in: the centre's namespace and config, the site's, the link."""

    lab: Lab
    centre_ns: str
    site_ns: str
    centre: Path
    site: Path
    centre_url: str  # as the site reaches it
    centre_log: Path  # the centre's access log
    upstream: Upstream | None
    args: argparse.Namespace

    def cli(self, ns: str, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "tfmirror.cli", "--config", str(config), *args]
        done: subprocess.CompletedProcess[str] = self.lab.run(
            ns, argv, cwd=ROOT, capture_output=True, text=True, timeout=3600
        )
        if done.returncode != 0:
            raise SystemExit(f"tfmirror {' '.join(args)}: {done.stderr.strip()[-500:]}")
        return done

    def site_serves(self, path: str) -> bool:
        url = f"{load_config(str(self.site)).web.base_url}{path}"
        return serves(self.lab, self.site_ns, url, timeout=300)

    def link_bytes_sent(self) -> int:
        """Bytes the centre's end of the link has sent (headers and TCP included)."""
        return link_tx_bytes(self.lab, self.centre_ns, 1)


def serves(lab: Lab, ns: str, url: str, timeout: float = 30) -> bool:
    """A HEAD of `url` from inside ns answers 200."""
    done = lab.run(
        ns,
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-I", url],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return bool(done.stdout.strip() == "200")


def link_tx_bytes(lab: Lab, ns: str, link: int) -> int:
    """Bytes ns's end of the lab's `link`-th link (from 1) has sent, TCP and all."""
    out = lab.run(ns, ["ip", "-s", "link", "show", f"wan{link}a"], capture_output=True, text=True)
    lines = out.stdout.splitlines()
    tx = next(i for i, line in enumerate(lines) if line.strip().startswith("TX:"))
    return int(lines[tx + 1].split()[0])


def centre_toml(port: int, requirements: str, index: str) -> str:
    """A centre on all its addresses (its sites reach it over their links), no nginx."""
    return (
        f'[storage]\npath = "data"\n[devpi]\nserverdir = ""\n'
        f'[web]\nhost = "0.0.0.0"\nport = {port}\n[proxy]\nenabled = false\n'
        f'[pypi]\nupstream = "{index}"\nrequirements = {requirements}\n'
        '[[pypi.targets]]\npython = "3.11"\nplatform = "manylinux_2_28_x86_64"\n'
    )


def pull_seconds(site: Path) -> float:
    """How long the site's last pull that fetched blobs took, by its run record."""
    store = LocalStore(load_config(str(site)).storage.path)
    took = 0.0
    for key in sorted(k for k in store.list("runs/follow/") if k.rsplit("/", 1)[-1][:1].isdigit()):
        record = json.loads(store.get(key) or b"{}")
        if record.get("counts", {}).get("new_blobs"):
            took = float(record["seconds"])
    return took


def blobs_of(config: Path) -> dict[str, int]:
    store = LocalStore(load_config(str(config)).storage.path)
    return {sha: store.blob_size(sha) or 0 for sha in referenced(read_manifests(store))}


def pull(sites: Sites) -> None:
    """A commit at the centre until the site serves it, against curl of the same blobs."""
    before = set(blobs_of(sites.centre))
    if sites.upstream is None:  # --tensorflow: from this machine's network
        cli = [sys.executable, "-m", "tfmirror.cli", "--config", str(sites.centre)]
        subprocess.run([*cli, "sync", "pypi", "--no-devpi"], check=True, cwd=ROOT)
    else:
        per = sites.args.size_mb * 1_000_000 // sites.args.files
        names = [f"load{i}" for i in range(sites.args.files)]
        for name in names:
            sites.upstream.add(WheelSpec(name, "1.0", noise=per))
        wanted = ", ".join(f'"{name}"' for name in ["alpha", *names])
        text = sites.centre.read_text().replace('["alpha"]', f"[{wanted}]")
        sites.centre.write_text(text)
        sites.cli(sites.centre_ns, sites.centre, "sync", "pypi", "--no-devpi")
    committed = time.monotonic()
    new = {sha: size for sha, size in blobs_of(sites.centre).items() if sha not in before}
    last = max(new, key=lambda sha: new[sha])
    # Served as the fleet sees it: the file on the site's live index (its manifest
    # committed), not the blob alone (stored as it arrives, before the commit).
    centre_store = LocalStore(load_config(str(sites.centre)).storage.path)
    name = next(w.filename for m in load_all(centre_store) for w in m.files if w.sha256 == last)
    probe = f"/files/{last}/{name}"
    while not sites.site_serves(probe):
        if time.monotonic() - committed > 3600:
            raise SystemExit("the site did not serve the commit within an hour")
        time.sleep(0.1)
    ours = time.monotonic() - committed
    total = sum(new.values())
    with tempfile.TemporaryDirectory(prefix="tfmirror-sites-curl-") as out:
        argv = ["curl", "-s", "--fail", "--parallel", "--parallel-max", "4"]
        for sha in new:
            argv += ["-o", f"{out}/{sha}", f"{sites.centre_url}/api/follow/blob/{sha}"]
        began = time.monotonic()
        sites.lab.run(sites.site_ns, argv, check=True, stderr=subprocess.DEVNULL)
        peer = time.monotonic() - began
    mb = total / 1e6
    pulled = pull_seconds(sites.site)
    print(
        f"pull  the site's pull itself (its run record: head to commit and devpi's offer) "
        f"{pulled:.2f} s; the rest of the span is the wait for its next interval and the "
        "front's first page of the new manifest",
        flush=True,
    )
    print(
        f"pull  {len(new)} blobs, {mb:.0f} MB: commit at the centre -> served at the site "
        f"{ours:.2f} s ({mb / ours:.1f} MB/s); curl --parallel 4 of the same blobs over the "
        f"same link {peer:.2f} s ({mb / peer:.1f} MB/s); ratio {ours / peer:.2f}x (goal <= 1.1x)",
        flush=True,
    )


def idle(sites: Sites) -> None:
    """What an idle site costs the centre: requests answered and bytes sent."""
    seconds = sites.args.idle_seconds
    time.sleep(3)  # any pull in flight ends
    lines = len(sites.centre_log.read_text().splitlines())
    sent = sites.link_bytes_sent()
    time.sleep(seconds)
    log = sites.centre_log.read_text().splitlines()[lines:]
    requests = [line for line in log if re.search(r'"GET /api/follow/', line)]
    sent = sites.link_bytes_sent() - sent
    print(
        f"idle  pulling every {sites.args.interval} s for {seconds} s: the centre answered "
        f"{len(requests)} requests ({len(requests) * 60 / seconds:.0f}/min, "
        f"{sum(' 304 ' in r for r in requests)} of them 304), sent {sent} bytes on the link "
        f"({sent * 3600 / seconds / 1e6:.1f} MB/hour)",
        flush=True,
    )


PARTS: dict[str, Callable[[Sites], None]] = {"pull": pull, "idle": idle}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", default="pull,idle", help=f"of {', '.join(PARTS)}")
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--delay-ms", type=float, default=20)
    parser.add_argument("--rate-mbit", type=float, default=100)
    parser.add_argument("--interval", type=float, default=1)
    parser.add_argument("--idle-seconds", type=int, default=60)
    parser.add_argument("--tensorflow", action="store_true")
    args = parser.parse_args()
    parts = [PARTS[p] for p in args.part.split(",")]
    why = unavailable()
    if why:
        raise SystemExit(f"bench.sites: {why}")
    with tempfile.TemporaryDirectory(prefix="tfmirror-sites-") as tmp, Lab("tfb") as lab:
        work = Path(tmp)
        c, s = lab.namespace("c"), lab.namespace("s")
        here, _ = lab.link(c, s, args.delay_ms, args.rate_mbit)
        print(
            f"link: {args.delay_ms} ms each way, {args.rate_mbit} Mbit/s ({lab.emulation})",
            flush=True,
        )
        (work / "centre").mkdir()
        centre = work / "centre" / "tfmirror.toml"
        port = free_port()
        upstream: Upstream | None = None
        with ExitStack() as stack:
            if args.tensorflow:
                requirements = '["tensorflow", "tensorflow-hub"]'
                index = "https://pypi.org/simple/"
            else:
                with lab.inside(c):
                    upstream = stack.enter_context(Upstream())
                upstream.add(WheelSpec("alpha", "1.0"))
                requirements, index = '["alpha"]', upstream.index_url
            centre.write_text(centre_toml(port, requirements, index))
            cli = [sys.executable, "-m", "tfmirror.cli", "--config", str(centre)]
            if upstream is not None:  # alpha: what the site holds before the timed commit
                sync = [*cli, "sync", "pypi", "--no-devpi"]
                subprocess.run(lab.argv(c, sync), check=True, cwd=ROOT)
            log = work / "centre.log"
            lab.popen(c, [*cli, "serve", "--workers", "1"], cwd=ROOT, stdout=log.open("w"),
                      stderr=subprocess.STDOUT)  # fmt: skip
            site_dir = work / "site"
            site_dir.mkdir()
            site = site_dir / "tfmirror.toml"
            site.write_text(
                f'[storage]\npath = "data"\n[devpi]\nurl = "http://127.0.0.1:{free_port()}"\n'
                f"[web]\nport = {free_port()}\n[proxy]\nenabled = false\n"
                f'[follow]\nurl = "http://{here}:{port}"\ninterval = {args.interval}\n'
                'name = "bench-site"\nbackoff_max = 1\n'
            )
            site_up = [sys.executable, "-m", "tfmirror.cli", "--config", str(site), "up"]
            lab.popen(s, site_up, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            sites = Sites(lab, c, s, centre, site, f"http://{here}:{port}", log, upstream, args)
            deadline = time.monotonic() + 300
            while not sites.site_serves("/healthz"):
                if time.monotonic() > deadline:
                    raise SystemExit("the site never served")
                time.sleep(0.5)
            time.sleep(args.interval * 3)  # the site's first pull ends before the timed commit
            for part in parts:
                part(sites)


if __name__ == "__main__":
    main()
