#!/usr/bin/env python3
"""How close do fileferry's bandwidth limits hold, and what do they cost others?

A figure to measure and report, not a test (tests assert no timings). It
starts a real server on loopback with a user database and measures, with
ftplib, over transfers of about ``--seconds`` each:

1. one download and one upload of a user limited to ``--rate`` bytes/s;
2. three concurrent downloads of that user, sharing the user's bucket;
3. three users under a server-wide ``download_rate`` of ``--rate``;
4. an unlimited user's repeated downloads alone, then beside three
   throttled sessions (the unlimited path must not slow down).

For each, the achieved rate is bytes / (time from the transfer command to
its 226) and the error is against the limit; the goal is within 5 %.

    .venv/bin/python bench/throttle_accuracy.py --rate 4M --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import ftplib
import io
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from fileferry import config
from fileferry.server.thread import ServerThread
from fileferry.users.base import ALL_PERMISSIONS, Account, StoredUser
from fileferry.users.fields import parse_size
from fileferry.users.passwords import hash_password
from fileferry.users.sqlite import SQLiteUserStore

PASSWORD = "bench"


def make_db(path: Path, accounts: list[Account]) -> None:
    async def fill() -> None:
        store = SQLiteUserStore(path)
        try:
            for account in accounts:
                await store.add(StoredUser(account, hash_password(PASSWORD)))
        finally:
            await store.close()

    asyncio.run(fill())


def login(address: tuple[str, int], name: str) -> ftplib.FTP:
    f = ftplib.FTP(timeout=120)
    f.connect(*address)
    f.login(name, PASSWORD)
    return f


def timed_download(address: tuple[str, int], name: str, path: str) -> tuple[int, float]:
    f = login(address, name)
    count = 0

    def sink(block: bytes) -> None:
        nonlocal count
        count += len(block)

    start = time.perf_counter()
    f.retrbinary(f"RETR {path}", sink, blocksize=256 * 1024)
    elapsed = time.perf_counter() - start
    f.quit()
    return count, elapsed


def timed_upload(address: tuple[str, int], name: str, data: bytes) -> tuple[int, float]:
    f = login(address, name)
    start = time.perf_counter()
    f.storbinary("STOR upload.bin", io.BytesIO(data), blocksize=256 * 1024)
    elapsed = time.perf_counter() - start
    f.quit()
    return len(data), elapsed


def repeated_download(
    address: tuple[str, int], name: str, path: str, times: int
) -> tuple[int, float]:
    """``times`` downloads in one session: long enough to time an unthrottled user."""
    f = login(address, name)
    count = 0

    def sink(block: bytes) -> None:
        nonlocal count
        count += len(block)

    start = time.perf_counter()
    for _ in range(times):
        f.retrbinary(f"RETR {path}", sink, blocksize=256 * 1024)
    elapsed = time.perf_counter() - start
    f.quit()
    return count, elapsed


def concurrently(jobs: list[Callable[[], tuple[int, float]]]) -> tuple[int, float]:
    """Run jobs in threads; total bytes over the span from first start to last end."""
    results: list[tuple[int, float]] = []
    start = time.perf_counter()
    threads = [threading.Thread(target=lambda j=j: results.append(j())) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(n for n, _ in results), time.perf_counter() - start


def report(label: str, nbytes: int, elapsed: float, limit: int | None) -> None:
    rate = nbytes / elapsed
    line = f"{label:<48} {nbytes / 1e6:8.1f} MB in {elapsed:6.2f} s = {rate / 1e6:8.2f} MB/s"
    if limit:
        line += f"   limit {limit / 1e6:.2f} MB/s, error {100 * (rate - limit) / limit:+.2f} %"
    print(line, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", default="4M", help="the limit to measure (default 4M = 4 MiB/s)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each transfer")
    parser.add_argument(
        "--repeat", type=int, default=40, help="downloads of the file by the unlimited user"
    )
    args = parser.parse_args()
    rate = parse_size(args.rate, "--rate")
    size = int(rate * args.seconds)

    with tempfile.TemporaryDirectory(prefix="ff-throttle-") as tmp:
        base = Path(tmp)
        for name in ("limited", "free", "g1", "g2", "g3"):
            (base / name).mkdir()
        blob = os.urandom(1 << 20) * (size // (1 << 20) + 1)
        data = blob[:size]
        for name in ("limited", "free", "g1", "g2", "g3"):
            (base / name / "file.bin").write_bytes(data)
        third = base / "limited" / "third.bin"
        third.write_bytes(data[: size // 3])
        root = base / "root"
        root.mkdir()
        db = base / "users.db"
        accounts = [
            Account(
                "limited",
                str(base / "limited"),
                ALL_PERMISSIONS,
                upload_rate=rate,
                download_rate=rate,
            ),
            Account("free", str(base / "free"), ALL_PERMISSIONS),
            *(Account(g, str(base / g), ALL_PERMISSIONS) for g in ("g1", "g2", "g3")),
        ]
        make_db(db, accounts)
        cfg = config.build({"root": str(root), "port": 0, "db": str(db), "anonymous": False})
        print(f"limit {rate} bytes/s, transfers of about {args.seconds:g} s", flush=True)
        with ServerThread(cfg) as srv:
            addr = srv.address
            report("per-user download", *timed_download(addr, "limited", "file.bin"), rate)
            report("per-user upload", *timed_upload(addr, "limited", data), rate)
            jobs = [lambda: timed_download(addr, "limited", "third.bin") for _ in range(3)]
            report("3 sessions of one user sharing its limit", *concurrently(jobs), rate)
            free_alone = repeated_download(addr, "free", "file.bin", args.repeat)
            report("unlimited user alone", *free_alone, None)
            busy = [lambda: timed_download(addr, "limited", "third.bin") for _ in range(3)]
            holder: list[tuple[int, float]] = []
            side = threading.Thread(target=lambda: holder.append(concurrently(busy)))
            side.start()
            free_busy = repeated_download(addr, "free", "file.bin", args.repeat)
            side.join()
            report("unlimited user beside 3 throttled sessions", *free_busy, None)
            slowdown = (free_busy[1] - free_alone[1]) / free_alone[1] * 100
            print(f"{'  time change for the unlimited user':<48} {slowdown:+.1f} %", flush=True)
        cfg = config.build(
            {"root": str(root), "port": 0, "db": str(db), "anonymous": False, "download_rate": rate}
        )
        with ServerThread(cfg) as srv:
            addr = srv.address
            jobs = [
                lambda g=g: timed_download(addr, g, "file.bin")  # type: ignore[misc]
                for g in ("g1", "g2", "g3")
            ]
            # Each downloads the whole file, so three times the bytes: about 3 x seconds.
            report("3 users under the server-wide download_rate", *concurrently(jobs), rate)
    return 0


if __name__ == "__main__":
    sys.exit(main())
