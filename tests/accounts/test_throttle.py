"""Token buckets on a model clock (no real time), and throttled transfers that stay intact."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from accountkit import Serve, get, home_of, put

from fileferry import config
from fileferry.limits.factory import make_limits
from fileferry.limits.throttle import (
    MAX_CHUNK,
    MIN_CHUNK,
    Throttle,
    TokenBucket,
    chunk_for,
    throttle,
)
from fileferry.server.accounts import AccountRegistry
from fileferry.users.base import ALL_PERMISSIONS, Account


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_chunk_is_a_tenth_of_a_second_within_bounds() -> None:
    assert chunk_for(1_000_000) == 100_000
    assert chunk_for(1) == MIN_CHUNK
    assert chunk_for(10**12) == MAX_CHUNK


def test_bucket_starts_with_one_burst_then_makes_takers_queue() -> None:
    clock = Clock()
    bucket = TokenBucket(100_000, clock)
    assert bucket.burst == 10_000
    assert bucket.reserve(10_000) == 0.0
    # Debt: each taker waits for its place in line, so shared use stays exact.
    assert bucket.reserve(10_000) == pytest.approx(0.1)
    assert bucket.reserve(10_000) == pytest.approx(0.2)
    clock.now += 0.2
    assert bucket.reserve(0) == pytest.approx(0.0)
    clock.now += 10  # idle time refills one burst, never more
    assert bucket.reserve(10_000) == 0.0
    assert bucket.reserve(1) > 0


def test_set_rate_keeps_the_debt_and_caps_the_burst() -> None:
    clock = Clock()
    bucket = TokenBucket(100_000, clock)
    bucket.reserve(30_000)  # 20 000 in debt
    bucket.set_rate(200_000)
    assert bucket.reserve(0) == pytest.approx(0.1)
    with pytest.raises(ValueError):
        bucket.set_rate(0)
    with pytest.raises(ValueError):
        TokenBucket(0)


def _simulate(rates: list[int], sessions: int, seconds: float) -> float:
    """Bytes per second achieved by ``sessions`` greedy senders sharing buckets."""
    clock = Clock()
    buckets = [TokenBucket(r, clock) for r in rates]
    throttles = [Throttle(*buckets) for _ in range(sessions)]
    ready = [clock.now] * sessions  # when each session may send again
    start, sent = clock.now, 0
    while True:
        i = min(range(sessions), key=ready.__getitem__)
        clock.now = ready[i]
        if clock.now - start >= seconds:
            break
        n = throttles[i].chunk
        wait = max(b.reserve(n) for b in throttles[i].buckets)
        if clock.now + wait < start + seconds:  # the chunk goes out after its wait
            sent += n
        ready[i] = clock.now + wait
    return sent / seconds


@pytest.mark.parametrize("sessions", [1, 3, 10])
def test_shared_rate_holds_within_two_percent_over_ten_model_seconds(sessions: int) -> None:
    assert _simulate([500_000], sessions, 10.0) == pytest.approx(500_000, rel=0.02)


def test_the_slowest_bucket_decides() -> None:
    assert _simulate([2_000_000, 300_000], 2, 10.0) == pytest.approx(300_000, rel=0.02)


def test_throttle_helper_and_registry_share_buckets_per_user() -> None:
    assert throttle(None, None) is None
    cfg = config.build({"root": ".", "download_rate": 5_000_000})
    registry = AccountRegistry(cfg, make_limits(cfg))
    alice = Account("alice", "/h", upload_rate=1000, download_rate=0)
    one, two = registry.acquire(alice), registry.acquire(alice)
    assert one is not None and two is not None
    assert one.upload is not None and two.upload is not None
    assert one.upload.buckets[0] is two.upload.buckets[0]  # shared by the user's sessions
    assert one.download is not None and one.download.buckets == (registry.global_download,)
    bob = registry.acquire(Account("bob", "/h"))
    assert bob is not None and bob.upload is None  # no limit: no throttle at all
    # A changed rate applies to the shared bucket at the next login.
    three = registry.acquire(Account("alice", "/h", upload_rate=4000))
    assert three is not None and one.upload.buckets[0].rate == 4000
    assert registry.sessions("alice") == 3
    for lease in (one, two, three, one):  # releasing twice is harmless
        lease.release()
    assert registry.sessions("alice") == 0


def _payload(size: int) -> bytes:
    block = hashlib.sha256(b"seed").digest()
    return (block * (size // len(block) + 1))[:size]


def test_throttled_transfers_arrive_intact(serve: Serve, homes: Path) -> None:
    home = home_of(homes, "slow")
    data = _payload(1_500_000)
    text = b"line one\nline two\n" * 20_000
    (home / "big.bin").write_bytes(data)
    (home / "text.txt").write_bytes(text)
    srv = serve(
        Account(
            "slow",
            str(home),
            permissions=ALL_PERMISSIONS,
            upload_rate=8_000_000,
            download_rate=8_000_000,
        ),
        upload_rate=20_000_000,
        download_rate=20_000_000,
    )
    f = srv.login("slow")
    assert hashlib.sha256(get(f, "big.bin")).hexdigest() == hashlib.sha256(data).hexdigest()
    buf = io.BytesIO()
    f.retrbinary("RETR big.bin", buf.write, rest=1_000_001)  # sendfile path, resumed
    assert buf.getvalue() == data[1_000_001:]
    lines: list[str] = []
    f.retrlines("RETR text.txt", lines.append)  # ASCII: converted chunk by chunk
    assert "\n".join(lines).encode() + b"\n" == text
    put(f, "up.bin", data)
    assert (home / "up.bin").read_bytes() == data
    f.storlines("STOR up.txt", io.BytesIO(text))
    assert (home / "up.txt").read_bytes() == text
    f.quit()
