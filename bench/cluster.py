"""Two nodes against one, behind HAProxy: the sizing numbers of docs/scale-out.md.

Not part of CI; no timing is asserted. It builds the loopback cluster of
``tests/cluster/clusterkit.py`` (HAProxy with ``send-proxy-v2``, nodes with
``--proxy-protocol``, one folder and one SQLite database) and drives it with
``bench/loadgen.py``, interleaving the layouts round by round so that a
noisy machine spreads its noise over all of them:

- ``direct``: one node, clients straight to it (no balancer, no header);
- ``1 node``: one node behind HAProxy;
- ``2 nodes``: two nodes behind HAProxy.

    .venv/bin/python bench/cluster.py --rounds 3

Every byte of a passive transfer crosses HAProxy twice on this machine, so
on few cores the balancer competes with the nodes for the CPU: read the
numbers with the core count next to them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "cluster"))

from clusterkit import BALANCER, Backend, Cluster, fileferry  # noqa: E402

LOADGEN = HERE / "loadgen.py"
SMALL_FILES = 200
SMALL_SIZE = 4096
BIG = 32 * 1024 * 1024


def fixtures(base: Path) -> Backend:
    root = base / "files"
    home = root / "bench"
    (home / "small").mkdir(parents=True)
    (home / "up").mkdir()
    for i in range(SMALL_FILES):
        (home / "small" / f"{i:04d}").write_bytes(os.urandom(SMALL_SIZE))
    (home / "big.bin").write_bytes(os.urandom(BIG))
    backend = Backend("local-sqlite", str(root), str(base / "users.db"))
    fileferry(
        "user", "add", "bench", "--db", backend.db, "--password-stdin", "--home", str(home),
        "--permissions", "elradfmw", stdin="bench\n",
    )  # fmt: skip
    return backend


@contextmanager
def layout(name: str, base: Path, backend: Backend) -> Iterator[tuple[str, int]]:
    work = Path(tempfile.mkdtemp(dir=base, prefix=name.replace(" ", "-")))
    count = 2 if name == "2 nodes" else 1
    cluster = Cluster(work, backend, count, width=400)
    try:
        if name == "direct":
            node = cluster.nodes[0]
            node.start(backend, ("--log-level", "warning"), proxied=False)
            yield node.host, node.port
        else:
            cluster.start(("--log-level", "warning"))
            yield cluster.address
    finally:
        cluster.stop()


def loadgen(host: str, port: int, scenario: str, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(LOADGEN), host, str(port), scenario, *args, "--user", "bench",
         "--password", "bench", "--no-uvloop"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def parallel_small(host: str, port: int, procs: int) -> float:
    """Files per second of ``procs`` sessions downloading 4 KiB files each, at once."""
    cmd = [sys.executable, str(LOADGEN), host, str(port), "small-retr", "small", "--count",
           str(SMALL_FILES), "--user", "bench", "--password", "bench", "--no-uvloop"]  # fmt: skip
    running = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(procs)]
    rates = []
    for proc in running:
        out, _ = proc.communicate(timeout=600)
        rates.append(json.loads(out.strip().splitlines()[-1])["files_s"])
    return sum(rates)


def measure(host: str, port: int) -> dict[str, float]:
    logins = loadgen(host, port, "logins", "--clients", "200")
    down = loadgen(host, port, "retr-many", "big.bin", "--clients", "8")
    up = loadgen(host, port, "stor-many", "up", "--clients", "8", "--size", str(BIG))
    return {
        "logins_s": 200 / logins["login_s"],
        "retr_mb_s": down["bytes"] / down["secs"] / 1e6,
        "stor_mb_s": up["bytes"] / up["secs"] / 1e6,
        "small_files_s": parallel_small(host, port, 4),
        "failed": float(logins["failed"] + down["failed"] + up["failed"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    names = ("direct", "1 node", "2 nodes")
    results: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory(prefix="fileferry-cluster-bench-") as tmp:
        base = Path(tmp)
        backend = fixtures(base)
        for round_ in range(args.rounds):
            for name in names:
                with layout(name, base, backend) as (host, port):
                    results[name].append(measure(host, port))
                print(f"round {round_ + 1} {name}: {results[name][-1]}", file=sys.stderr)
    keys = ("logins_s", "retr_mb_s", "stor_mb_s", "small_files_s", "failed")
    print(f"{os.cpu_count()} cores; medians of {args.rounds} rounds; balancer on {BALANCER}")
    print(f"| layout | {' | '.join(keys)} |")
    print("| --- " * (len(keys) + 1) + "|")
    for name in names:
        cells = [f"{statistics.median(r[k] for r in results[name]):,.0f}" for k in keys]
        print(f"| {name} | {' | '.join(cells)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
