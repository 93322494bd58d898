"""fileferry over S3 against obstore itself, on one SeaweedFS: what the FTP layer costs.

obstore reading and writing the same objects on the same store from one
Python process is the ceiling a Python FTP server on that store can reach,
so each fileferry figure is reported as a ratio to it (>= 0.8 is the goal).
The FTP side is driven by ``bench/loadgen.py`` (raw sockets, nothing per
chunk), exactly as in the main benchmark. Memory (PSS of the server process)
is sampled during the 300-transfer runs, beside the same runs against a
local-disk server.

    .venv/bin/python bench/s3.py                 # ~15 min on 2 cores, ~50 GB of disk
    .venv/bin/python bench/s3.py --quick         # 64 MiB, 50 clients, 1,000 keys
    .venv/bin/python bench/s3.py --only list     # one part: big, many, list, relay
    .venv/bin/python bench/s3.py --only list --keys 10000,100000 --rounds 5
    .venv/bin/python bench/s3.py --only stor     # the uploads only (big and many)
    .venv/bin/python bench/s3.py --only relay-stor --rounds 2   # the upload ceilings

The ``relay`` part adds a second ceiling for downloads: ``bench/s3relay.py``,
a trivial FTP responder whose RETR streams obstore's GET into the data
socket, driven by the same load generator. obstore alone only counts the
bytes it is handed; a server must also write them to a socket, and here an
FTP client on the same cores must read them (see ``docs/storage.md``). The
part runs fileferry, the relay and obstore alone in turn, round after round,
and reports each one's CPU seconds per GB beside its throughput. Its
uploads (``relay-stor``; ``relay-retr`` is the downloads) are the same for
STOR: the relay receives the data connection straight into part buffers
handed to obstore's multipart writer with fileferry's part size, parts in
flight and gate, once without hashing and once (a second relay,
``--sha256``) with the SHA-256 fileferry computes, so the hash's share
shows. Every upload run's objects are read back and checked, as below.
``--perf FILE`` records one more 300-upload run of fileferry and of the
relay each with ``perf record -g`` (FILE.fileferry, FILE.relay).

For uploads both sides are the same kind of client: obstore alone uploads
with fileferry's part size and parts in flight per upload
(``s3parts.PART_SIZE``, ``s3io.PART_CONCURRENCY``), all 300 uploads begun at
once, each part admitted by the same gate as the server's parts
(``s3parts.UploadGate``, ``PARTS_IN_FLIGHT``), through the same client settings
(``S3Settings``: timeouts, retries). After every upload run each side's
objects are read back and checked (count, size, SHA-256) and the store's
pending multipart uploads under the prefix are listed, so a figure that
hides a failure is reported as one. The store is made ready for 300
writers first (:func:`grow_volumes`): see docs/storage.md, "Benchmark".

Not part of CI; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "services"))

from memory import PeakSampler  # noqa: E402
from seaweed import Seaweed  # noqa: E402

MIB = 1 << 20
#: A soft memory limit for weed's Go runtime (see :func:`main`).
WEED_MEMORY_LIMIT = "3GiB"
#: Volumes grown before the runs: enough that no write waits for a new one.
VOLUMES = 24


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


def pattern(size: int) -> bytes:
    """What both sides upload: the bytes 0..255 repeated (loadgen's payload)."""
    return (bytes(range(256)) * (size // 256 + 1))[:size]


def grow_volumes(seaweed: Seaweed, count: int = VOLUMES) -> None:
    """Have the master make ``count`` writable volumes for the bucket now, not mid-run.

    A burst of writes into a fresh bucket otherwise makes the master grow
    volumes while hundreds of chunk assignments wait on it; on a busy 2-core
    machine those waits outlast weed's own internal deadline ("assign
    volume: context deadline exceeded") and the part PUT fails with a 500.
    A store in service has its volumes long before a burst.
    """
    url = f"http://127.0.0.1:{seaweed.ports['master']}/vol/grow"
    url += f"?collection={seaweed.bucket}&count={count}"
    deadline = time.monotonic() + 120
    while True:  # 406 until the volume server has reported to the master
        try:
            with urllib.request.urlopen(url, timeout=300) as answer:
                answer.read()
                return
        except urllib.error.HTTPError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"cannot grow volumes: {exc} {exc.read()[:300]!r}") from None
        time.sleep(0.5)


async def obstore_put(store: Any, key: str, size: int, gate: Any = None) -> int:
    """One upload shaped like fileferry's: its part size and its parts in flight.

    Each part is lent to obstore as a view of one pattern buffer (no copy on
    this side at all); with ``gate`` (an ``s3parts.UploadGate``) each part
    takes a place there first and gives it back when obstore is done with
    it, exactly as fileferry's parts do.
    """
    import obstore

    from fileferry.storage.s3io import PART_CONCURRENCY
    from fileferry.storage.s3parts import PART_SIZE, lend

    block = bytearray(pattern(PART_SIZE))

    async def parts() -> Any:
        left = size
        while left > 0:
            n = min(left, PART_SIZE)
            release = await gate.enter() if gate is not None else None
            yield lend(block, n, reuse=False, release=release)
            left -= n

    await obstore.put_async(
        store, key, parts(), chunk_size=PART_SIZE, max_concurrency=PART_CONCURRENCY
    )
    return size


async def obstore_put_many(store: Any, folder: str, clients: int, size: int) -> list[str]:
    """``clients`` uploads at once, their parts admitted by a gate like the server's; the errors."""
    from fileferry.storage.s3parts import UploadGate

    gate = UploadGate()

    async def one(i: int) -> int:
        return await obstore_put(store, f"{folder}/m{i:04d}", size, gate)

    results = await asyncio.gather(*(one(i) for i in range(clients)), return_exceptions=True)
    return [str(r)[:200] for r in results if isinstance(r, BaseException)]


async def check_objects(seaweed: Seaweed, store: Any, keys: list[str], size: int) -> str:
    """What is wrong with the objects ``keys`` after an upload run ("" when nothing).

    Every object is read back and its SHA-256 compared; multipart uploads
    still pending under the keys' folder are listed from the store.
    """
    import obstore

    want = hashlib.sha256(pattern(size)).hexdigest()
    sem = asyncio.Semaphore(16)

    async def one(key: str) -> str:
        async with sem:
            try:
                result = await obstore.get_async(store, key)
            except FileNotFoundError:
                return "missing"
            digest = hashlib.sha256()
            async for chunk in result.stream(min_chunk_size=MIB):
                digest.update(chunk)
            return "" if digest.hexdigest() == want else "wrong bytes"

    found = await asyncio.gather(*(one(k) for k in keys))
    folder = keys[0].rsplit("/", 1)[0] + "/"
    pending = await asyncio.to_thread(seaweed.pending_uploads, folder)
    problems = [f"{found.count(p)} {p}" for p in ("missing", "wrong bytes") if p in found]
    if pending:
        problems.append(f"{len(pending)} pending uploads")
    return ", ".join(problems)


class CpuMeter:
    """CPU seconds each of some processes spends in a block (children: loadgen runs)."""

    def __init__(self, **pids: int) -> None:
        self.pids = pids
        self.used: dict[str, float] = {}

    def __enter__(self) -> CpuMeter:
        self._start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self._children = _children_cpu()
        self._self = sum(os.times()[:2])
        return self

    def __exit__(self, *exc: object) -> None:
        self.used = {name: cpu_seconds(pid) - self._start[name] for name, pid in self.pids.items()}
        self.used["loadgen"] = _children_cpu() - self._children
        self.used["bench"] = sum(os.times()[:2]) - self._self

    def __str__(self) -> str:
        return ", ".join(f"{name} {secs:.1f}" for name, secs in self.used.items() if secs >= 0.05)


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


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
        help="comma-separated parts: big, many, list, relay; stor = the uploads of big and many;"
        " relay-retr, relay-stor = the downloads or uploads of relay",
    )
    p.add_argument("--perf", default="", help="relay-stor: perf record one more run into FILE.*")
    p.add_argument(
        "--keys", default="", help="keys of the LIST part, comma-separated folders (10000)"
    )
    args = p.parse_args()
    parts = set(args.only.split(","))
    if "stor" in parts:
        parts |= {"big-stor", "many-stor"}
    for part in ("big", "many", "relay"):
        if part in parts:
            parts |= {f"{part}-stor", f"{part}-retr"}
    big = 64 * MIB if args.quick else 512 * MIB
    clients = 50 if args.quick else 300
    each = 10 * MIB
    keys = [int(k) for k in args.keys.split(",") if k] or [1000 if args.quick else 10_000]
    rounds = args.rounds

    work = Path(tempfile.mkdtemp(prefix="fileferry-s3-bench-"))
    # Room for every object the runs write: overwritten ones are not reclaimed
    # meanwhile, and a full run writes about 45 GB (40 volumes ran out in
    # relay-stor's second round). Needs that much free disk.
    seaweed = Seaweed(work / "seaweed", volume_mb=1024, volumes=64)
    # Under 300 concurrent uploads weed's heap grew past 13 GB on a 24 GB
    # machine (Go collects only when the heap doubles); a soft limit makes
    # it collect sooner instead of taking the machine's memory.
    os.environ.setdefault("GOMEMLIMIT", WEED_MEMORY_LIMIT)
    seaweed.start()
    rows: list[tuple[str, float, float, str]] = []
    relayed: list[Any] = []
    uploads: list[Any] = []
    memory: list[tuple[str, float, float]] = []
    servers: list[Served | Relayed] = []
    try:
        grow_volumes(seaweed)
        store = store_for(seaweed)
        s3 = Served(f"s3://{seaweed.bucket}/bench", seaweed.env(), work / "s3.log")
        local_root = work / "local"
        local_root.mkdir()
        local = Served(str(local_root), {}, work / "local.log")
        servers += [s3, local]
        print(
            f"SeaweedFS at {seaweed.endpoint}; fileferry on :{s3.port} (S3), :{local.port} (disk)"
        )

        if parts & {"big-stor", "big-retr"}:
            run_big(seaweed, s3.port, store, big, rounds, rows, parts)
        if parts & {"many-stor", "many-retr"}:
            run_many(
                seaweed, s3, local, local_root, store, clients, each, rows, memory, parts, rounds
            )
        if "list" in parts:
            for n in keys:
                run_list(s3.port, store, n, rounds, rows)
        if parts & {"relay-retr", "relay-stor"}:
            relay = Relayed(f"{seaweed.bucket}/bench", seaweed.env(), work / "relay.log")
            servers.append(relay)
        if "relay-retr" in parts:
            relayed = run_relay(s3, relay, seaweed, store, big, clients, each, rounds)
        if "relay-stor" in parts:
            hashing = Relayed(
                f"{seaweed.bucket}/relaysha", seaweed.env(), work / "relay.log", "--sha256"
            )
            servers.append(hashing)
            uploads = run_relay_stor(
                s3, relay, hashing, seaweed, store, big, clients, each, rounds, args.perf
            )
    finally:
        for server in servers:
            server.stop()
        seaweed.stop()
        shutil.rmtree(work, ignore_errors=True)
    report(rows, memory)
    report_relay(relayed)
    report_relay_stor(uploads)


def run_big(
    seaweed: Seaweed, port: int, store: Any, big: int, rounds: int, rows: list[Any], parts: set[str]
) -> None:
    """One 512 MiB object each way: fileferry (loadgen) and obstore on the same store.

    The rounds of the two sides alternate, so a change in the machine's
    load (it is shared) falls on both rather than on one.
    """
    size = str(big)
    if "big-stor" in parts or "big-retr" in parts:
        ff_times: list[float] = []
        ob_times: list[float] = []
        for _ in range(rounds):
            ff_times.append(loadgen(port, "stor", "/big.bin", "--size", size)["secs"])
            ob_times.append(timed(lambda: obstore_put(store, "bench/raw.bin", big)))
        ff, ob = statistics.median(ff_times), statistics.median(ob_times)
        each = ", ".join(
            f"{big / f / 1e6:.0f}/{big / o / 1e6:.0f}"
            for f, o in zip(ff_times, ob_times, strict=True)
        )
        print(f"  STOR rounds (fileferry/obstore MB/s): {each}", flush=True)
        wrong = [
            asyncio.run(check_objects(seaweed, store, [key], big))
            for key in ("bench/big.bin", "bench/raw.bin")
        ]
        what = f"STOR {big // MIB} MiB"
        if any(wrong):
            what += f" ({wrong[0] or 'right'}/{wrong[1] or 'right'})"
        rows.append((what, big / ff / 1e6, big / ob / 1e6, "MB/s"))
    if "big-retr" not in parts:
        return
    ff = median_of(rounds, lambda: loadgen(port, "retr", "/big.bin")["secs"])
    ob = median_of(rounds, lambda: timed(lambda: obstore_get(store, "bench/big.bin")))
    rows.append((f"RETR {big // MIB} MiB", big / ff / 1e6, big / ob / 1e6, "MB/s"))
    print(rows[-2:], flush=True)


def run_many(
    seaweed: Seaweed,
    s3: Served,
    local: Served,
    local_root: Path,
    store: Any,
    clients: int,
    each: int,
    rows: list[Any],
    memory: list[Any],
    parts: set[str],
    rounds: int = 1,
) -> None:
    """``clients`` transfers of 10 MiB at once, with the server's PSS beside local disk's."""
    import obstore

    async def seed() -> None:
        await obstore_put(store, "bench/ten.bin", each)
        await obstore.put_async(store, "bench/many/.keep", b"")

    asyncio.run(seed())
    (local_root / "ten.bin").write_bytes(bytes(each))
    (local_root / "many").mkdir()

    def ff_many(server: Served, scenario: str, path: str, *extra: str) -> tuple[float, Any, int]:
        assert seaweed.process is not None
        meter = CpuMeter(fileferry=server.proc.pid, weed=seaweed.process.pid)
        with PeakSampler(server.proc.pid) as sampler, meter:
            out = loadgen(server.port, scenario, path, "--clients", str(clients), *extra)
        print(f"  {scenario}: {out['secs']:.1f} s; CPU s: {meter}", flush=True)
        if out.get("failed"):
            print(f"  {scenario}: {out['failed']} failed ({out.get('error')})", flush=True)
        return out["secs"], sampler.peak, int(out.get("failed", 0))

    async def ob_many_get() -> None:
        await asyncio.gather(*(obstore_get(store, "bench/ten.bin") for _ in range(clients)))

    ob_failed = 0

    async def ob_many_put() -> None:
        """All uploads at once, their parts admitted as the server admits its own."""
        nonlocal ob_failed
        failed = await obstore_put_many(store, "bench/raw-many", clients, each)
        ob_failed = len(failed)
        if failed:
            print(f"  obstore puts: {len(failed)} failed ({failed[0]})", flush=True)

    total = clients * each
    if "many-retr" in parts:
        secs, peak, _ = ff_many(s3, "retr-many", "/ten.bin")
        ob = timed(ob_many_get)
        rows.append((f"{clients} x RETR 10 MiB", total / secs / 1e6, total / ob / 1e6, "MB/s"))
        _, local_peak, _ = ff_many(local, "retr-many", "/ten.bin")
        memory.append((f"{clients} downloads", peak.pss / MIB, local_peak.pss / MIB))
    if "many-stor" not in parts:
        return
    ff_times: list[float] = []
    ob_times: list[float] = []
    peak = None
    notes: list[str] = []
    for _ in range(rounds):  # alternating, so a change in the machine's load falls on both
        secs, round_peak, ff_failed = ff_many(s3, "stor-many", "/many", "--size", str(each))
        peak = round_peak if peak is None else peak.max(round_peak)
        ff_times.append(secs)
        ff_wrong = asyncio.run(
            check_objects(seaweed, store, [f"bench/many/m{i:04d}" for i in range(clients)], each)
        )
        assert seaweed.process is not None
        with CpuMeter(weed=seaweed.process.pid) as meter:
            ob_times.append(timed(ob_many_put))
        print(f"  obstore puts: {ob_times[-1]:.1f} s; CPU s: {meter}", flush=True)
        ob_wrong = asyncio.run(
            check_objects(
                seaweed, store, [f"bench/raw-many/m{i:04d}" for i in range(clients)], each
            )
        )
        print(
            f"  after STOR: fileferry {ff_wrong or 'all right'}; obstore {ob_wrong or 'all right'}"
        )
        if ff_failed or ob_failed or ff_wrong or ob_wrong:
            notes.append(f"fileferry {ff_failed} failed {ff_wrong}, obstore {ob_failed} {ob_wrong}")
    secs, ob = statistics.median(ff_times), statistics.median(ob_times)
    each_round = ", ".join(
        f"{total / f / 1e6:.0f}/{total / o / 1e6:.0f}"
        for f, o in zip(ff_times, ob_times, strict=True)
    )
    print(f"  STOR-many rounds (fileferry/obstore MB/s): {each_round}", flush=True)
    what = f"{clients} x STOR 10 MiB"
    if notes:
        what += f" ({'; '.join(notes)})"
    rows.append((what, total / secs / 1e6, total / ob / 1e6, "MB/s"))
    assert peak is not None
    _, local_peak, _ = ff_many(local, "stor-many", "/many", "--size", str(each))
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

    def __init__(self, location: str, env: dict[str, str], log: Path, *extra: str) -> None:
        argv = [sys.executable, str(HERE / "s3relay.py"), location, *extra]
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


def summarise(
    runs: dict[str, list[tuple[float, ...]]], size: int, rounds: int
) -> dict[str, tuple[float, ...]]:
    """Per side: median MB/s, CPU s per GB (reader, FTP client, SeaweedFS), peak PSS (MiB).

    Each run is what :func:`ftp_run` returns (seconds, the three CPU figures,
    peak PSS); CPU is summed over the rounds, so one slow round weighs in fully.
    """
    gb = size * rounds / 1e9
    return {
        side: (
            size / statistics.median(r[0] for r in got) / 1e6,
            *(sum(r[i] for r in got) / gb for i in (1, 2, 3)),
            max(r[4] for r in got),
        )
        for side, got in runs.items()
    }


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
            runs["ff"].append(ftp_run(s3.port, s3.proc.pid, weed, *scenario))
            runs["relay"].append(ftp_run(relay.port, relay.proc.pid, weed, *scenario))
            runs["ob"].append(alone(ob_fn))
        summary = summarise(runs, size, rounds)
        out.append((what, summary))
        print(what, summary, flush=True)
    return out


def ftp_run(
    port: int, pid: int, weed: int, scenario: str, path: str, *extra: str
) -> tuple[float, ...]:
    """One loadgen run: seconds, CPU s of ``pid``, of loadgen, of weed, and peak PSS (MiB)."""
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


#: The sides of the upload ceilings, in report order.
UPLOADERS = {
    "ff": "fileferry",
    "relay": "relay",
    "relaysha": "relay + SHA-256",
    "ob": "obstore alone",
}


def run_relay_stor(
    s3: Served,
    relay: Relayed,
    hashing: Relayed,
    seaweed: Seaweed,
    store: Any,
    big: int,
    clients: int,
    each: int,
    rounds: int,
    perf: str = "",
) -> list[Any]:
    """STOR by fileferry, the relay, the hashing relay and obstore alone, in turn each round.

    The FTP sides upload the same paths under their own prefixes (fileferry
    ``bench/``, the relays ``bench/`` and ``relaysha/``: the plain relay
    shares fileferry's prefix, so it writes to ``bench/up-relay...``), and
    after every run the objects are read back and checked (count, size,
    SHA-256, pending multipart uploads). CPU is summed as in :func:`run_relay`.
    """
    assert seaweed.process is not None
    weed = seaweed.process.pid
    targets = {
        "ff": (s3.port, s3.proc.pid, "bench/up"),
        "relay": (relay.port, relay.proc.pid, "bench/up-relay"),
        "relaysha": (hashing.port, hashing.proc.pid, "relaysha/up"),
    }

    def ftp_path(side: str, many: bool) -> str:
        # Relative to the side's root: fileferry's and the plain relay's is bench/.
        folder = targets[side][2].split("/", 1)[1]
        return f"/{folder}-many" if many else f"/{folder}-big.bin"

    def keys(side: str, many: bool) -> list[str]:
        base = targets[side][2] if side != "ob" else "bench/up-raw"
        if many:
            return [f"{base}-many/m{i:04d}" for i in range(clients)]
        return [f"{base}-big.bin"]

    async def mkdirs() -> None:
        import obstore

        # fileferry's STOR wants the folder to exist (a marker, as the stor part makes).
        await obstore.put_async(store, "bench/up-many/.keep", b"")

    asyncio.run(mkdirs())
    out: list[Any] = []
    for many, size in ((False, big), (True, clients * each)):
        what = f"{clients} x STOR {each // MIB} MiB" if many else f"STOR {big // MIB} MiB"
        runs: dict[str, list[tuple[float, ...]]] = {side: [] for side in UPLOADERS}
        problems: list[str] = []
        for _ in range(rounds):
            for side in ("ff", "relay", "relaysha"):
                port, pid, _ = targets[side]
                if many:
                    scenario = ("stor-many", ftp_path(side, True), "--clients", str(clients))
                    scenario += ("--size", str(each))
                else:
                    scenario = ("stor", ftp_path(side, False), "--size", str(big))
                runs[side].append(ftp_run(port, pid, weed, *scenario))
            w, own = cpu_seconds(weed), time.process_time()
            if many:
                started = time.perf_counter()
                failed = asyncio.run(obstore_put_many(store, "bench/up-raw-many", clients, each))
                secs = time.perf_counter() - started
                if failed:
                    problems.append(f"obstore {len(failed)} failed ({failed[0]})")
            else:
                secs = timed(lambda: obstore_put(store, "bench/up-raw-big.bin", big))
            runs["ob"].append((secs, time.process_time() - own, 0.0, cpu_seconds(weed) - w, 0.0))
            for side in UPLOADERS:
                wrong = asyncio.run(
                    check_objects(seaweed, store, keys(side, many), each if many else big)
                )
                if wrong:
                    problems.append(f"{UPLOADERS[side]}: {wrong}")
            rates = ", ".join(
                f"{UPLOADERS[side]} {size / got[-1][0] / 1e6:.0f}" for side, got in runs.items()
            )
            print(f"  {what} (MB/s): {rates}; {'; '.join(problems) or 'all read back right'}")
        summary = summarise(runs, size, rounds)
        out.append((what + (f" ({'; '.join(problems)})" if problems else ""), summary))
        print(what, summary, flush=True)
    if perf:
        for side, name in (("ff", "fileferry"), ("relay", "relay")):
            port, pid, _ = targets[side]
            record = subprocess.Popen(
                ["perf", "record", "-g", "-F", "499", "-o", f"{perf}.{name}", "-p", str(pid)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1)  # perf attaches before the run starts
            got = ftp_run(
                port,
                pid,
                weed,
                "stor-many",
                ftp_path(side, True),
                "--clients",
                str(clients),
                "--size",
                str(each),
            )
            record.send_signal(signal.SIGINT)
            record.wait(120)
            print(f"  perf {name}: {clients * each / got[0] / 1e6:.0f} MB/s, CPU s {got[1]:.1f}")
    return out


def report_relay_stor(uploads: list[Any]) -> None:
    if not uploads:
        return
    print()
    print("| what | " + " | ".join(UPLOADERS.values()) + " |")
    print("| --- |" + " ---: |" * len(UPLOADERS))
    for what, s in uploads:
        ff = s["ff"][0]
        cells = [f"{ff:,.0f} MB/s"]
        cells += [f"{s[k][0]:,.0f} MB/s ({ff / s[k][0]:.2f}x)" for k in UPLOADERS if k != "ff"]
        print(f"| {what} | " + " | ".join(cells) + " |")
    print()
    print("| CPU s per GB | uploading to the store | FTP client | SeaweedFS | total | peak PSS |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for what, s in uploads:
        for key, name in UPLOADERS.items():
            _, own, client, weed, pss = s[key]
            memory = f"{pss:,.0f} MiB" if pss else "-"
            print(
                f"| {what.split(' (')[0]}: {name} | {own:.2f} | {client:.2f} | {weed:.2f} "
                f"| {own + client + weed:.2f} | {memory} |"
            )


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
    if rows:
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
