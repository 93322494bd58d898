"""fileferry over S3 against obstore itself, on one SeaweedFS: what the FTP layer costs.

obstore reading and writing the same objects on the same store from one
Python process is the ceiling a Python FTP server on that store can reach,
so each fileferry figure is reported as a ratio to it (>= 0.8 is the goal).
The FTP side is driven by ``bench/loadgen.py`` (raw sockets, nothing per
chunk), exactly as in the main benchmark. Memory (PSS of the server process)
is sampled during the 300-transfer runs, beside the same runs against a
local-disk server.

    .venv/bin/python bench/s3.py                 # ~10 min on 2 cores
    .venv/bin/python bench/s3.py --quick         # 64 MiB, 50 clients, 1,000 keys
    .venv/bin/python bench/s3.py --only list     # one part: big, many, list, relay
    .venv/bin/python bench/s3.py --only list --keys 10000,100000 --rounds 5

The ``relay`` part adds a second ceiling for downloads: ``bench/s3relay.py``,
a trivial FTP responder whose RETR streams obstore's GET into the data
socket, driven by the same load generator. obstore alone only counts the
bytes it is handed; a server must also write them to a socket, and here an
FTP client on the same cores must read them (see ``docs/storage.md``). The
part runs fileferry, the relay and obstore alone in turn, round after round,
and reports each one's CPU seconds per GB beside its throughput.

Not part of CI; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "services"))

from memory import PeakSampler  # noqa: E402
from seaweed import Seaweed  # noqa: E402

MIB = 1 << 20


def loadgen(port: int, scenario: str, path: str, *extra: str) -> dict[str, Any]:
    argv = [sys.executable, str(HERE / "loadgen.py"), "127.0.0.1", str(port), scenario, path]
    argv += ["--user", "bench", "--password", "bench", "--timeout", "1200", *extra]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=1500)
    if done.returncode != 0:
        raise RuntimeError(f"loadgen {scenario}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


class Served:
    """``fileferry serve ROOT`` with one user ``bench``, its log in a file."""

    def __init__(self, root: str, env: dict[str, str], log: Path) -> None:
        argv = [sys.executable, "-m", "fileferry", "serve", root, "--port", "0"]
        argv += ["--user", "bench:bench", "--max-sessions-per-ip", "1000"]
        argv += ["--max-sessions", "2000", "--log-level", "warning"]
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=out,
                text=True,
                env={**os.environ, **env},
            )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        found = re.search(r"ftp://[\d.]+:(\d+)", line)
        if found is None:
            raise RuntimeError(f"fileferry serve {root}: {line!r} (see {log})")
        self.port = int(found[1])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def store_for(seaweed: Seaweed) -> Any:
    os.environ.update(seaweed.env())
    from fileferry.backends.s3 import S3Settings

    return S3Settings(None).store(seaweed.bucket)


async def obstore_get(store: Any, key: str) -> int:
    import obstore

    result = await obstore.get_async(store, key)
    n = 0
    async for chunk in result.stream(min_chunk_size=MIB):
        n += len(chunk)
    return n


async def obstore_put(store: Any, key: str, size: int) -> int:
    import obstore

    block = (bytes(range(256)) * (MIB // 256))[:MIB]

    async def chunks() -> Any:
        left = size
        while left > 0:
            yield block[: min(left, MIB)]
            left -= MIB

    await obstore.put_async(store, key, chunks())
    return size


def timed(coro_fn: Any) -> float:
    started = time.perf_counter()
    asyncio.run(coro_fn())
    return time.perf_counter() - started


def median_of(rounds: int, fn: Any) -> float:
    return statistics.median(fn() for _ in range(rounds))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument(
        "--only",
        default="big,many,list,relay",
        help="comma-separated parts: big, many, list, relay",
    )
    p.add_argument(
        "--keys", default="", help="keys of the LIST part, comma-separated folders (10000)"
    )
    args = p.parse_args()
    parts = set(args.only.split(","))
    big = 64 * MIB if args.quick else 512 * MIB
    clients = 50 if args.quick else 300
    each = 10 * MIB
    keys = [int(k) for k in args.keys.split(",") if k] or [1000 if args.quick else 10_000]
    rounds = args.rounds

    work = Path(tempfile.mkdtemp(prefix="fileferry-s3-bench-"))
    # Room for every object the runs write (overwritten ones are not reclaimed meanwhile).
    seaweed = Seaweed(work / "seaweed", volume_mb=1024, volumes=40)
    seaweed.start()
    rows: list[tuple[str, float, float, str]] = []
    relayed: list[Any] = []
    memory: list[tuple[str, float, float]] = []
    servers: list[Served | Relayed] = []
    try:
        store = store_for(seaweed)
        s3 = Served(f"s3://{seaweed.bucket}/bench", seaweed.env(), work / "s3.log")
        local_root = work / "local"
        local_root.mkdir()
        local = Served(str(local_root), {}, work / "local.log")
        servers += [s3, local]
        print(
            f"SeaweedFS at {seaweed.endpoint}; fileferry on :{s3.port} (S3), :{local.port} (disk)"
        )

        if "big" in parts:
            run_big(s3.port, store, big, rounds, rows)
        if "many" in parts:
            run_many(s3, local, local_root, store, clients, each, rows, memory)
        if "list" in parts:
            for n in keys:
                run_list(s3.port, store, n, rounds, rows)
        if "relay" in parts:
            relay = Relayed(f"{seaweed.bucket}/bench", seaweed.env(), work / "relay.log")
            servers.append(relay)
            relayed = run_relay(s3, relay, seaweed, store, big, clients, each, rounds)
    finally:
        for server in servers:
            server.stop()
        seaweed.stop()
        shutil.rmtree(work, ignore_errors=True)
    report(rows, memory)
    report_relay(relayed)


def run_big(port: int, store: Any, big: int, rounds: int, rows: list[Any]) -> None:
    """One 512 MiB object each way: fileferry (loadgen) and obstore on the same store."""
    size = str(big)
    ff = median_of(rounds, lambda: loadgen(port, "stor", "/big.bin", "--size", size)["secs"])
    ob = median_of(rounds, lambda: timed(lambda: obstore_put(store, "bench/raw.bin", big)))
    rows.append((f"STOR {big // MIB} MiB", big / ff / 1e6, big / ob / 1e6, "MB/s"))
    ff = median_of(rounds, lambda: loadgen(port, "retr", "/big.bin")["secs"])
    ob = median_of(rounds, lambda: timed(lambda: obstore_get(store, "bench/big.bin")))
    rows.append((f"RETR {big // MIB} MiB", big / ff / 1e6, big / ob / 1e6, "MB/s"))
    print(rows[-2:], flush=True)


def run_many(
    s3: Served,
    local: Served,
    local_root: Path,
    store: Any,
    clients: int,
    each: int,
    rows: list[Any],
    memory: list[Any],
) -> None:
    """``clients`` transfers of 10 MiB at once, with the server's PSS beside local disk's."""
    import obstore

    async def seed() -> None:
        await obstore_put(store, "bench/ten.bin", each)
        await obstore.put_async(store, "bench/many/.keep", b"")

    asyncio.run(seed())
    (local_root / "ten.bin").write_bytes(bytes(each))
    (local_root / "many").mkdir()

    def ff_many(server: Served, scenario: str, path: str, *extra: str) -> tuple[float, Any]:
        with PeakSampler(server.proc.pid) as sampler:
            out = loadgen(server.port, scenario, path, "--clients", str(clients), *extra)
        if out.get("failed"):
            print(f"  {scenario}: {out['failed']} failed ({out.get('error')})", flush=True)
        return out["secs"], sampler.peak

    async def ob_many_get() -> None:
        await asyncio.gather(*(obstore_get(store, "bench/ten.bin") for _ in range(clients)))

    async def ob_many_put() -> None:
        results = await asyncio.gather(
            *(obstore_put(store, f"bench/raw-many/{i}", each) for i in range(clients)),
            return_exceptions=True,
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            print(f"  obstore puts: {len(failed)} failed ({str(failed[0])[:200]})", flush=True)

    total = clients * each
    secs, peak = ff_many(s3, "retr-many", "/ten.bin")
    ob = timed(ob_many_get)
    rows.append((f"{clients} x RETR 10 MiB", total / secs / 1e6, total / ob / 1e6, "MB/s"))
    _, local_peak = ff_many(local, "retr-many", "/ten.bin")
    memory.append((f"{clients} downloads", peak.pss / MIB, local_peak.pss / MIB))
    secs, peak = ff_many(s3, "stor-many", "/many", "--size", str(each))
    ob = timed(ob_many_put)
    rows.append((f"{clients} x STOR 10 MiB", total / secs / 1e6, total / ob / 1e6, "MB/s"))
    _, local_peak = ff_many(local, "stor-many", "/many", "--size", str(each))
    memory.append((f"{clients} uploads", peak.pss / MIB, local_peak.pss / MIB))
    print(rows[-2:], memory, flush=True)


def run_list(port: int, store: Any, keys: int, rounds: int, rows: list[Any]) -> None:
    """LIST of a folder of ``keys`` objects against obstore's delimiter listing of it.

    Each folder is ``bench/wide`` afresh (the keys of a smaller run stay and
    are counted in): run the sizes in increasing order, in one store.
    """
    import obstore

    from fileferry.backends.s3 import S3Locations
    from fileferry.protocol.listing import ListingRenderer

    async def fill() -> None:
        sem = asyncio.Semaphore(64)

        async def one(i: int) -> None:
            async with sem:
                for attempt in range(3):  # a loaded SeaweedFS answers the odd 500
                    try:
                        await obstore.put_async(store, f"bench/wide/k{i:06d}", b"x")
                        return
                    except Exception:
                        if attempt == 2:
                            raise

        await asyncio.gather(*(one(i) for i in range(keys)))

    asyncio.run(fill())

    async def ob_list() -> None:
        await obstore.list_with_delimiter_async(store, "bench/wide")

    storage = S3Locations(None).storage(f"s3://{store.config['bucket']}/bench")

    async def ff_storage() -> None:
        # The storage layer alone, as the server calls it for LIST (limit = cap + 1).
        render = ListingRenderer("LIST", time.time(), (), "elr", 200_000)
        rendered = await storage.list_rendered("/wide", render, 200_001)
        assert rendered.count == keys, rendered.count

    # Interleaved, so that a busy moment of the machine does not land on one side only.
    ff, ob, layer = [], [], []
    for _ in range(rounds):
        ff.append(loadgen(port, "list", "/wide", "--repeat", "1")["secs"])
        ob.append(timed(ob_list))
        layer.append(timed(ff_storage))
    median = statistics.median
    rows.append((f"LIST of {keys:,} keys (FTP)", median(ff), median(ob), "s"))
    rows.append((f"list_rendered of {keys:,} keys (in-process)", median(layer), median(ob), "s"))
    print(rows[-2:], flush=True)


class Relayed:
    """``bench/s3relay.py`` on the bucket, with the same store settings as fileferry."""

    def __init__(self, location: str, env: dict[str, str], log: Path) -> None:
        argv = [sys.executable, str(HERE / "s3relay.py"), location]
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=out, text=True, env={**os.environ, **env}
            )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("ready "):
            raise RuntimeError(f"s3relay: {line!r} (see {log})")
        self.port = int(line.split()[1])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process ``pid`` (all its threads) so far."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def run_relay(
    s3: Served,
    relay: Relayed,
    seaweed: Seaweed,
    store: Any,
    big: int,
    clients: int,
    each: int,
    rounds: int,
) -> list[Any]:
    """RETR by fileferry, by the relay and by obstore alone, in turn each round.

    Taking turns puts the three under the same load from the rest of the
    machine. Beside each median rate: CPU seconds per GB of the process
    that reads the store (server, relay, or obstore's own), of the FTP
    client (loadgen) and of SeaweedFS, each summed over its rounds.
    """
    assert seaweed.process is not None
    weed = seaweed.process.pid

    async def seed() -> None:
        await obstore_put(store, "bench/relay-big.bin", big)
        await obstore_put(store, "bench/relay-ten.bin", each)

    asyncio.run(seed())

    def ftp(port: int, pid: int, scenario: str, path: str, *extra: str) -> tuple[float, ...]:
        before, client, w = cpu_seconds(pid), os.times(), cpu_seconds(weed)
        with PeakSampler(pid) as sampler:
            out = loadgen(port, scenario, path, *extra)
        after = os.times()
        if out.get("failed"):
            print(f"  {scenario} on :{port}: {out['failed']} failed ({out.get('error')})")
        spent = after.children_user + after.children_system
        spent -= client.children_user + client.children_system
        own = cpu_seconds(pid) - before
        return out["secs"], own, spent, cpu_seconds(weed) - w, sampler.peak.pss / MIB

    def alone(fn: Any) -> tuple[float, ...]:
        w, own = cpu_seconds(weed), time.process_time()
        secs = timed(fn)
        return secs, time.process_time() - own, 0.0, cpu_seconds(weed) - w, 0.0

    async def ob_many() -> None:
        await asyncio.gather(*(obstore_get(store, "bench/relay-ten.bin") for _ in range(clients)))

    cases = [
        (
            f"RETR {big // MIB} MiB",
            big,
            ("retr", "/relay-big.bin"),
            lambda: obstore_get(store, "bench/relay-big.bin"),
        ),
        (
            f"{clients} x RETR 10 MiB",
            clients * each,
            ("retr-many", "/relay-ten.bin", "--clients", str(clients)),
            ob_many,
        ),
    ]
    out: list[Any] = []
    for what, size, scenario, ob_fn in cases:
        runs: dict[str, list[tuple[float, ...]]] = {"ff": [], "relay": [], "ob": []}
        for _ in range(rounds):
            runs["ff"].append(ftp(s3.port, s3.proc.pid, *scenario))
            runs["relay"].append(ftp(relay.port, relay.proc.pid, *scenario))
            runs["ob"].append(alone(ob_fn))
        gb = size * rounds / 1e9
        summary = {
            name: (
                size / statistics.median(r[0] for r in got) / 1e6,
                *(sum(r[i] for r in got) / gb for i in (1, 2, 3)),
                max(r[4] for r in got),
            )
            for name, got in runs.items()
        }
        out.append((what, summary))
        print(what, summary, flush=True)
    return out


def report_relay(relayed: list[Any]) -> None:
    if not relayed:
        return
    print()
    print("| what | fileferry over S3 | obstore relayed over FTP | ratio | obstore alone | ratio |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for what, s in relayed:
        ff, relay, ob = s["ff"][0], s["relay"][0], s["ob"][0]
        print(
            f"| {what} | {ff:,.0f} MB/s | {relay:,.0f} MB/s | {ff / relay:.2f}x "
            f"| {ob:,.0f} MB/s | {ff / ob:.2f}x |"
        )
    print()
    print("| CPU s per GB | reading the store | FTP client | SeaweedFS | total | peak PSS |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    names = {"ff": "fileferry", "relay": "relay", "ob": "obstore alone"}
    for what, s in relayed:
        for key, name in names.items():
            _, own, client, weed, pss = s[key]
            total = own + client + weed
            memory = f"{pss:,.0f} MiB" if pss else "-"
            print(
                f"| {what}: {name} | {own:.2f} | {client:.2f} | {weed:.2f} | {total:.2f} "
                f"| {memory} |"
            )


def report(rows: list[Any], memory: list[Any]) -> None:
    print()
    print("| what | fileferry over S3 | obstore alone | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for what, ff, ob, unit in rows:
        ratio = ob / ff if unit == "s" else ff / ob
        print(f"| {what} | {ff:,.2f} {unit} | {ob:,.2f} {unit} | {ratio:.2f}x |")
    if memory:
        print()
        print("| server PSS, peak | fileferry over S3 | fileferry on local disk |")
        print("| --- | ---: | ---: |")
        for what, s3_pss, local_pss in memory:
            print(f"| {what} | {s3_pss:,.0f} MiB | {local_pss:,.0f} MiB |")


if __name__ == "__main__":
    main()
