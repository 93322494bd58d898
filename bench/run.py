"""Benchmark driver: fileferry against pyftpdlib, vsftpd and pure-ftpd, side by side.

    .venv/bin/python bench/run.py --quick            # a few minutes
    .venv/bin/python bench/run.py --rounds 11 --write-docs
    .venv/bin/python bench/run.py --only a,b --servers fileferry,pyftpdlib
    .venv/bin/python bench/run.py --baseline ../fileferry-before   # before/after, interleaved
    .venv/bin/python bench/run.py --from-json /tmp/fileferry-bench/results.json --write-docs

Every server runs at once on its own loopback port with its own root (the
fixtures are hard links, so all read the same cached pages). The measurements
are interleaved: round after round, row after row, every server in a rotated
order, so that the machine's noise (it is shared, and has 2 cores) spreads
over all servers instead of landing on one. The report gives medians, min-max
and "how many times better fileferry is" against each peer (>= 1.0 means
fileferry leads; for times and memory the ratio is inverted so that higher is
always better). Each number comes from ``bench/loadgen.py`` in a fresh
process; the in-memory ``bench/responder.py`` runs the same scenarios and is
reported as the ceiling of the load generator.

Nothing here installs anything (see bench/README.md), and nothing here runs
in CI or asserts a timing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import memory
import report
import servers as srv

LOADGEN = Path(__file__).resolve().parent / "loadgen.py"
MIB = 1024 * 1024


@dataclass(frozen=True)
class Sizes:
    rounds: int
    big: int
    clients: int
    each: int
    small_count: int
    small_size: int
    list_entries: int
    idle: int


FULL = Sizes(rounds=7, big=512 * MIB, clients=300, each=10 * MIB, small_count=1000,
             small_size=4096, list_entries=10_000, idle=300)  # fmt: skip
QUICK = Sizes(rounds=3, big=128 * MIB, clients=100, each=2 * MIB, small_count=200,
              small_size=4096, list_entries=10_000, idle=100)  # fmt: skip


# --- fixtures -------------------------------------------------------------------


def make_fixtures(work: Path, sizes: Sizes) -> Path:
    """The master copy of every file the rows read; rebuilt when a size changed."""
    master = work / "fixtures"
    stamp = master / ".sizes"
    want = json.dumps(sizes.__dict__)
    if stamp.exists() and stamp.read_text() == want:
        return master
    if master.exists():
        shutil.rmtree(master)
    master.mkdir(parents=True)
    block = os.urandom(MIB)
    for name, size in (("big.bin", sizes.big), ("ten.bin", sizes.each)):
        with open(master / name, "wb") as fh:
            for _ in range(size // MIB):
                fh.write(block)
    (master / "small").mkdir()
    for i in range(sizes.small_count):
        (master / "small" / f"{i:04d}").write_bytes(block[i : i + sizes.small_size])
    (master / "list").mkdir()
    for i in range(sizes.list_entries):
        (master / "list" / f"entry-{i:05d}.dat").write_bytes(b"")
    stamp.write_text(want)
    return master


def make_root(master: Path, root: Path) -> Path:
    """A server's root: hard links to the fixtures, plus a world-writable ``up/``."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    os.chmod(root, 0o755)
    for entry in master.iterdir():
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            (root / entry.name).mkdir()
            os.chmod(root / entry.name, 0o755)
            for f in entry.iterdir():
                os.link(f, root / entry.name / f.name)
        else:
            os.link(entry, root / entry.name)
    for f in master.rglob("*"):
        if f.is_file():
            os.chmod(f, 0o644)
    reset_uploads(root)
    return root


def reset_uploads(root: Path) -> None:
    up = root / "up"
    if up.exists():
        shutil.rmtree(up)
    for d in (up, up / "e", up / "h"):
        d.mkdir()
        os.chmod(d, 0o777)


def warm_cache(master: Path) -> None:
    for f in master.rglob("*"):
        if f.is_file():
            with open(f, "rb") as fh:
                while fh.read(8 * MIB):
                    pass


# --- one measurement -----------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, sizes: Sizes, work: Path) -> None:
        self.args = args
        self.sizes = sizes
        self.work = work
        self.samples: dict[str, dict[str, list[float]]] = {}
        self.errors: dict[str, dict[str, str]] = {}
        self.peaks: dict[str, memory.Usage] = {}
        self.starts: dict[str, memory.Usage] = {}

    def record(self, server: srv.Server, metric: str, value: float) -> None:
        self.samples.setdefault(server.name, {}).setdefault(metric, []).append(value)

    def loadgen(self, server: srv.Server, *args: str, tls: bool = False) -> dict[str, Any]:
        argv = [sys.executable, str(LOADGEN), "127.0.0.1", str(server.port), *args]
        argv += ["--user", server.user, "--password", server.password]
        if tls:
            argv.append("--tls")
        with memory.PeakSampler(server.pid) as sampler:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
        self.peak(server, sampler.peak)
        return _parse(out.stdout, out.stderr)

    def peak(self, server: srv.Server, usage: memory.Usage) -> None:
        self.peaks[server.name] = self.peaks.get(server.name, memory.Usage()).max(usage)

    def measure(self, server: srv.Server, row: str, rnd: int) -> dict[str, float]:
        """Run one row against one server; returns metric -> value."""
        s = self.sizes
        big, n, each = str(s.big), str(s.clients), str(s.each)
        if row == "a_retr":
            r = self.loadgen(server, "retr", "big.bin")
            return {"a_retr": r["mb_s"]}
        if row == "b_stor":
            r = self.loadgen(server, "stor", f"up/b{rnd}.bin", "--size", big)
            return {"b_stor": r["mb_s"]}
        if row == "c_login":
            return self.logins(server)
        if row == "d_retr_many":
            r = self.loadgen(server, "retr-many", "ten.bin", "--clients", n)
            _check(r, int(n) * s.each)
            return {"d_retr_many": r["secs"]}
        if row == "e_stor_many":
            r = self.loadgen(server, "stor-many", "up/e", "--clients", n, "--size", each)
            _check(r, int(n) * s.each)
            return {"e_stor_many": r["secs"]}
        if row == "f_retr_idle":
            r = self.loadgen(server, "retr", "big.bin", "--idle", str(s.idle))
            return {"f_retr_idle": r["mb_s"]}
        if row == "f_stor_idle":
            r = self.loadgen(server, "stor", f"up/f{rnd}.bin", "--size", big, "--idle", str(s.idle))
            return {"f_stor_idle": r["mb_s"]}
        if row == "h_small":
            count, size = str(s.small_count), str(s.small_size)
            st = self.loadgen(server, "small-stor", "up/h", "--count", count, "--size", size)
            rt = self.loadgen(server, "small-retr", "small", "--count", count)
            return {"h_stor": st["files_s"], "h_retr": rt["files_s"]}
        if row == "i_list":
            r = self.loadgen(server, "list", "list", "--repeat", "5")
            return {"i_list": r["secs"] * 1000}
        if row == "tls_retr":
            r = self.loadgen(server, "retr", "big.bin", tls=True)
            return {"tls_retr": r["mb_s"]}
        if row == "tls_stor":
            r = self.loadgen(server, "stor", f"up/t{rnd}.bin", "--size", big, tls=True)
            return {"tls_stor": r["mb_s"]}
        raise ValueError(row)

    def logins(self, server: srv.Server) -> dict[str, float]:
        """300 logins at once; memory with every session open; then 300 x QUIT."""
        argv = [sys.executable, str(LOADGEN), "127.0.0.1", str(server.port), "logins"]
        argv += ["--clients", str(self.sizes.clients), "--pause"]
        argv += ["--user", server.user, "--password", server.password]
        with memory.PeakSampler(server.pid) as sampler:
            proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            assert proc.stdin is not None and proc.stdout is not None
            first = proc.stdout.readline()
            with_sessions = memory.tree_usage(server.pid)
            proc.stdin.write("\n")
            proc.stdin.flush()
            rest, err = proc.communicate(timeout=600)
        self.peak(server, sampler.peak)
        event = _parse(first, err)
        result = _parse(rest, err)
        if result.get("failed"):
            raise RuntimeError(f"{result['failed']} sessions failed: {result.get('error')}")
        return {
            "c_login": event["secs"],
            "c_quit": result["quit_s"],
            "g_pss_sessions": with_sessions.pss / MIB,
            "g_rss_sessions": with_sessions.rss / MIB,
        }


def _parse(stdout: str, stderr: str) -> dict[str, Any]:
    lines = [line for line in stdout.strip().splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"load generator printed nothing: {stderr.strip()[-300:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    if "error" in result and not result.get("failed"):
        raise RuntimeError(result["error"])
    return result


def _check(result: dict[str, Any], expected: int) -> None:
    if result.get("failed") or result.get("bytes") != expected:
        raise RuntimeError(
            f"{result.get('failed')} transfers failed, {result.get('bytes')} of {expected} "
            f"bytes: {result.get('error', '')}"
        )


# --- the run -----------------------------------------------------------------------


def start_servers(args: argparse.Namespace, master: Path, work: Path) -> list[srv.Server]:
    wanted = args.servers.split(",") if args.servers else None
    cert = srv.make_cert(work)
    ff_tls = cert is not None and srv.fileferry_has_flag("--tls-cert")
    candidates: list[tuple[str, Any, dict[str, Any]]] = [
        ("fileferry", srv.start_fileferry, {"cert": cert if ff_tls else None, "tls": ff_tls}),
        ("fileferry-w2", srv.start_fileferry,
         {"extra": ("--workers", "2"), "rows": ("c_login", "d_retr_many", "e_stor_many"),
          "note": "--workers 2"}),
        ("fileferry-fsync", srv.start_fileferry,
         {"extra": ("--fsync-uploads",), "rows": ("b_stor", "e_stor_many", "h_small"),
          "note": "--fsync-uploads"}),
        ("fileferry-base", srv.start_fileferry,
         {"cert": cert if ff_tls else None, "tls": ff_tls, "source": args.baseline,
          "note": "the --baseline checkout"}),
        ("pyftpdlib", srv.start_pyftpdlib, {"cert": cert, "tls": cert is not None}),
        ("vsftpd", srv.start_vsftpd, {"cert": cert, "tls": cert is not None}),
        ("pure-ftpd", srv.start_pureftpd, {"cert": cert, "tls": cert is not None}),
        ("ceiling", srv.start_responder,
         {"rows": tuple(r for r in srv.ALL_ROWS if not r.startswith("tls_"))}),
    ]  # fmt: skip
    started: list[srv.Server] = []
    for name, start, opts in candidates:
        if wanted is not None and name not in wanted:
            continue
        if name == "fileferry-base" and args.baseline is None:
            continue
        if name == "fileferry-w2" and not srv.fileferry_has_flag("--workers"):
            print(f"  skip {name}: fileferry has no --workers flag yet")
            continue
        server = srv.Server(name=name, root=make_root(master, work / "roots" / name))
        server.port = srv.free_port()
        server.tls = opts.pop("tls", False)
        server.rows = opts.pop("rows", srv.ALL_ROWS)
        server.note = opts.pop("note", "")
        try:
            start(server, work, **opts)
        except (srv.Unavailable, subprocess.CalledProcessError, OSError) as exc:
            print(f"  skip {name}: {exc}")
            continue
        if not server.tls and any(r.startswith("tls_") for r in server.rows):
            server.note = (server.note + "; " if server.note else "") + "no FTPS here"
        print(f"  {name:16} {server.version}  port {server.port}")
        started.append(server)
    return started


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="3 rounds, smaller files, 100 clients")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 7, quick 3)")
    p.add_argument("--only", help="rows to run, e.g. a,b,c,tls (default: all)")
    p.add_argument("--servers", help="servers to run, e.g. fileferry,pyftpdlib,ceiling")
    p.add_argument("--work", default="/tmp/fileferry-bench", help="fixtures, roots, results")
    p.add_argument("--write-docs", action="store_true", help="rewrite docs/benchmarks.md + png")
    p.add_argument("--from-json", help="report on a saved results.json instead of running")
    p.add_argument(
        "--baseline",
        type=Path,
        help="another checkout (e.g. a git worktree of an older commit) run as fileferry-base,"
        " interleaved with this one: before/after a change in one run",
    )
    args = p.parse_args(argv)
    # SIGTERM should stop the servers too, like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    if args.from_json:
        results = json.loads(Path(args.from_json).read_text())
        print(report.text_table(results))
        if args.write_docs:
            report.write_docs(results)
        return 0

    sizes = QUICK if args.quick else FULL
    if args.rounds:
        sizes = Sizes(**{**sizes.__dict__, "rounds": args.rounds})
    rows = select_rows(args.only)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    print(f"fixtures in {work} ...", flush=True)
    master = make_fixtures(work, sizes)
    warm_cache(master)
    print("servers:", flush=True)
    servers = srv_list = start_servers(args, master, work)
    bench = Bench(args, sizes, work)
    started = time.monotonic()
    try:
        time.sleep(1.0)
        for server in servers:
            bench.starts[server.name] = memory.tree_usage(server.pid)
        for rnd in range(sizes.rounds):
            for row in rows:
                order = srv_list[rnd % len(srv_list) :] + srv_list[: rnd % len(srv_list)]
                for server in order:
                    if not server.takes(row):
                        continue
                    run_one(bench, server, row, rnd)
            print(f"-- round {rnd + 1}/{sizes.rounds} done at {time.monotonic() - started:.0f} s",
                  flush=True)  # fmt: skip
    finally:
        srv.kill_all(servers)
    results = collect(bench, servers, sizes, rows, time.monotonic() - started)
    out = work / "results.json"
    out.write_text(json.dumps(results, indent=1))
    print(report.text_table(results))
    print(f"results saved to {out}")
    if args.write_docs:
        report.write_docs(results)
    return 0


def run_one(bench: Bench, server: srv.Server, row: str, rnd: int) -> None:
    try:
        values = bench.measure(server, row, rnd)
    except Exception as exc:
        bench.errors.setdefault(server.name, {})[row] = f"{type(exc).__name__}: {exc}"[:300]
        print(f"  r{rnd + 1} {row:12} {server.name:16} FAILED {exc}"[:300], flush=True)
        values = {}
    finally:
        reset_uploads(server.root)
    for metric, value in values.items():
        bench.record(server, metric, value)
    shown = " ".join(f"{k}={v:.4g}" for k, v in values.items())
    if values:
        print(f"  r{rnd + 1} {row:12} {server.name:16} {shown}", flush=True)


def select_rows(only: str | None) -> tuple[str, ...]:
    if not only:
        return srv.ALL_ROWS
    picked = []
    for part in only.split(","):
        part = part.strip()
        picked += [r for r in srv.ALL_ROWS if r == part or r.split("_")[0] == part]
    return tuple(dict.fromkeys(picked))


def collect(
    bench: Bench, servers: list[srv.Server], sizes: Sizes, rows: tuple[str, ...], secs: float
) -> dict[str, Any]:
    for server in servers:
        start, peak = bench.starts.get(server.name), bench.peaks.get(server.name)
        if start is not None:
            bench.record(server, "g_pss_start", start.pss / MIB)
            bench.record(server, "g_rss_start", start.rss / MIB)
        if peak is not None and peak.pss:
            bench.record(server, "g_pss_peak", peak.pss / MIB)
            bench.record(server, "g_rss_peak", peak.rss / MIB)
    return {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "seconds": round(secs),
        "sizes": sizes.__dict__,
        "rows": list(rows),
        "machine": machine(),
        "servers": {s.name: {"version": s.version, "note": s.note, "tls": s.tls} for s in servers},
        "samples": bench.samples,
        "errors": bench.errors,
        "medians": {
            name: {m: statistics.median(v) for m, v in metrics.items()}
            for name, metrics in bench.samples.items()
        },
    }


def machine() -> dict[str, str]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": f"{mem:.0f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "os": _os_name(),
    }


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()


if __name__ == "__main__":
    sys.exit(main())
