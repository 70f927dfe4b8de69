"""Bench: a fleet across sites. A centre and `--sites` sites, each in its own network
namespace behind an emulated WAN link to the centre (testkit.netns); each site runs
`tfmirror up` following the centre and, in its namespace, a rack's edge cache
(`tfmirror proxy --edge`) in front of its nginx; `--clients` clients per site (curl
transfers, all at once) fetch every file of a new commit through their edge.

Counts, in the same run:
  - the time from the commit at the centre until every site serves it;
  - the bytes the centre sent on each WAN link, against the commit's size: each blob
    should cross each link once, and clients should cost the centre nothing;
  - the fetches each edge made of its site per file (its access log: MISS), goal one;
  - the clients' wall time and the bytes the edges delivered;
then recomputes the README's figure: 1,000 nodes across the sites, each taking
`--closure-mb` (the TensorFlow closure, 636 MB).

    python -m bench.edge_fleet [--sites 4] [--clients 64] [--size-mb 40] [--files 8]
                               [--delay-ms 20] [--rate-mbit 100]

Needs root (namespaces) and nginx. All on this machine's cores: the sites share them,
so the delivery rate is what one box gives all sites at once, not one site's own.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urljoin

from bench.sites import ROOT, centre_toml, link_tx_bytes, serves
from mirror.core.config import load_config
from mirror.core.storage import LocalStore
from mirror.proxy.nginx import nginx_binary
from mirror.pypi.manifest import load_all
from testkit.netns import Lab, unavailable
from testkit.servers import free_port
from testkit.upstream import Upstream
from testkit.wheels import WheelSpec

PEP691 = "application/vnd.pypi.simple.v1+json"
NODES = 1000


def curl(lab: Lab, ns: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    done: subprocess.CompletedProcess[str] = lab.run(
        ns, ["curl", "-s", *args], capture_output=True, text=True, timeout=timeout
    )
    return done


def wait_for(check: Callable[[], bool], what: str, seconds: float = 600) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench.edge_fleet: {what} did not happen within {seconds:.0f} s")
        time.sleep(0.2)


def site_toml(centre_url: str, web: int, devpi: int, proxy: int) -> str:
    return (
        f'[storage]\npath = "data"\n[devpi]\nurl = "http://127.0.0.1:{devpi}"\n'
        f'index = "fleet/pypi"\n[web]\nport = {web}\n'
        f'[proxy]\nenabled = true\nhost = "127.0.0.1"\nport = {proxy}\n'
        f'[follow]\nurl = "{centre_url}"\ninterval = 1\nbackoff_max = 1\n'
    )


def file_urls(lab: Lab, ns: str, edge: str, projects: list[str]) -> list[str]:
    """Every file of `projects` as the edge's index links it (pip's view)."""
    urls = []
    for project in projects:
        page = f"{edge}/fleet/pypi/+simple/{project}/"
        done = curl(lab, ns, "-L", "-H", f"Accept: {PEP691}", page, timeout=60)
        urls += [urljoin(page, f["url"].split("#")[0]) for f in json.loads(done.stdout)["files"]]
    return urls


def edge_misses(log: Path) -> int:
    return sum("/+f/" in line and "cache=MISS" in line for line in log.read_text().splitlines())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=4)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--size-mb", type=int, default=40)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--delay-ms", type=float, default=20)
    parser.add_argument("--rate-mbit", type=float, default=100)
    parser.add_argument("--closure-mb", type=float, default=636)
    args = parser.parse_args()
    why = unavailable() or ("" if nginx_binary("nginx") else "nginx is not installed")
    if why:
        raise SystemExit(f"bench.edge_fleet: {why}")
    if not 1 <= args.sites <= 6:
        raise SystemExit("bench.edge_fleet: --sites is 1 to 6 (a lab holds 8 namespaces)")
    with tempfile.TemporaryDirectory(prefix="tfmirror-fleet-") as tmp, Lab("tff") as lab:
        work = Path(tmp)
        c = lab.namespace("c")
        sites = [lab.namespace(f"s{i}") for i in range(args.sites)]
        addrs = [lab.link(c, s, args.delay_ms, args.rate_mbit)[0] for s in sites]
        print(
            f"{args.sites} sites, each {args.delay_ms} ms each way and {args.rate_mbit} Mbit/s "
            f"from the centre ({lab.emulation}); {args.clients} clients per site",
            flush=True,
        )
        with ExitStack() as stack:
            with lab.inside(c):
                upstream = stack.enter_context(Upstream())
            upstream.add(WheelSpec("alpha", "1.0"))
            (work / "centre").mkdir()
            centre = work / "centre" / "tfmirror.toml"
            port = free_port()
            centre.write_text(centre_toml(port, '["alpha"]', upstream.index_url))
            cli = [sys.executable, "-m", "tfmirror.cli", "--config", str(centre)]
            subprocess.run(lab.argv(c, [*cli, "sync", "pypi", "--no-devpi"]), check=True, cwd=ROOT)
            lab.popen(c, [*cli, "serve"], cwd=ROOT, stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL)  # fmt: skip
            edges, logs = [], []
            for i, (ns, addr) in enumerate(zip(sites, addrs, strict=True)):
                folder = work / f"site{i}"
                folder.mkdir()
                config = folder / "tfmirror.toml"
                proxy = free_port()
                config.write_text(
                    site_toml(f"http://{addr}:{port}", free_port(), free_port(), proxy)
                )
                up = [sys.executable, "-m", "tfmirror.cli", "--config", str(config), "up"]
                lab.popen(ns, up, cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)  # fmt: skip
                edge_port = free_port()
                edge = [sys.executable, "-m", "tfmirror.cli", "proxy", "--edge",
                        f"http://127.0.0.1:{proxy}", "--host", "127.0.0.1", "--port",
                        str(edge_port), "--cache-dir", str(folder / "edge")]  # fmt: skip
                lab.popen(ns, edge, cwd=folder, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)  # fmt: skip
                edges.append(f"http://127.0.0.1:{edge_port}")
                logs.append(folder / "edge" / "access.log")
            for ns, edge in zip(sites, edges, strict=True):
                up = f"{edge}/healthz"
                wait_for(lambda ns=ns, up=up: serves(lab, ns, up), f"the edge at {ns}")
            for ns, edge in zip(sites, edges, strict=True):  # each site's first pull: alpha
                page = f"{edge}/fleet/pypi/+simple/alpha/"
                wait_for(lambda ns=ns, page=page: "alpha-1.0" in curl(lab, ns, page).stdout,
                         f"{ns} serving alpha")  # fmt: skip

            # The commit: generated wheels at the centre.
            per = args.size_mb * 1_000_000 // args.files
            names = [f"load{i}" for i in range(args.files)]
            for name in names:
                upstream.add(WheelSpec(name, "1.0", noise=per))
            wanted = ", ".join(f'"{n}"' for n in ["alpha", *names])
            centre.write_text(centre_toml(port, f"[{wanted}]", upstream.index_url))
            store = LocalStore(load_config(str(centre)).storage.path)
            before = {w.sha256 for m in load_all(store) for w in m.files}
            sent_before = [link_tx_bytes(lab, c, n + 1) for n in range(args.sites)]
            subprocess.run(lab.argv(c, [*cli, "sync", "pypi", "--no-devpi"]), check=True, cwd=ROOT)
            committed = time.monotonic()
            new = {w.sha256: w for m in load_all(store) for w in m.files if w.sha256 not in before}
            size = sum(w.size or 0 for w in new.values())
            largest = max(new.values(), key=lambda w: w.size or 0)
            probe = f"/fleet/pypi/+simple/{largest.project}/"
            for ns, edge in zip(sites, edges, strict=True):
                page = f"{edge}{probe}"
                wait_for(lambda ns=ns, page=page: largest.filename in curl(lab, ns, page).stdout,
                         f"{ns} serving the commit")  # fmt: skip
            pulled = time.monotonic() - committed
            sent_pull = [link_tx_bytes(lab, c, n + 1) - b for n, b in enumerate(sent_before)]
            print(
                f"commit of {len(new)} files, {size / 1e6:.0f} MB: every site serves it "
                f"{pulled:.1f} s after; the centre sent per link "
                + ", ".join(f"{s / size:.2f}x" for s in sent_pull)
                + " the commit's bytes",
                flush=True,
            )

            # The clients: every file through their rack's edge, all at once.
            urls = [file_urls(lab, ns, e, names) for ns, e in zip(sites, edges, strict=True)]
            misses_before = [edge_misses(log) if log.exists() else 0 for log in logs]
            results: list[float] = [0.0] * args.sites

            def rack(i: int) -> None:
                argv = ["--parallel", "--parallel-max", str(args.clients), "--fail"]
                for _ in range(args.clients):
                    for url in urls[i]:
                        argv += ["-o", "/dev/null", url]
                began = time.monotonic()
                curl(lab, sites[i], *argv, timeout=3600)
                results[i] = time.monotonic() - began

            began = time.monotonic()
            threads = [threading.Thread(target=rack, args=(i,)) for i in range(args.sites)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.monotonic() - began
            sent_clients = [
                link_tx_bytes(lab, c, n + 1) - b - p
                for n, (b, p) in enumerate(zip(sent_before, sent_pull, strict=True))
            ]
            time.sleep(6)  # the edges' access logs flush every 5 s
            misses = [edge_misses(log) - m for log, m in zip(logs, misses_before, strict=True)]
            delivered = args.sites * args.clients * size
            rate = delivered / wall
            print(
                f"clients: {args.sites} x {args.clients} each fetching all {len(new)} files "
                f"through its edge: {wall:.1f} s ({delivered / 1e9:.1f} GB, "
                f"{rate / 1e9:.2f} GB/s from all edges on this machine); "
                f"edge fetches of their site per file "
                + ", ".join(f"{m / len(new):.2f}" for m in misses)
                + "; bytes the centre sent meanwhile "
                + ", ".join(str(s) for s in sent_clients),
                flush=True,
            )
            closure = args.closure_mb * 1e6
            wan_s = pulled * closure / size
            per_site = NODES / args.sites
            lan_s = per_site * closure / (rate / args.sites)
            print(
                f"{NODES} nodes x {args.closure_mb:.0f} MB across {args.sites} sites: the "
                f"closure reaches every site in ~{wan_s:.0f} s at this link rate (scaled from "
                f"the commit above), then {per_site:.0f} nodes per site at this run's "
                f"per-site rate ({rate / args.sites / 1e9:.2f} GB/s) take ~{lan_s:.0f} s",
                flush=True,
            )


if __name__ == "__main__":
    main()
