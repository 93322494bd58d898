"""Server CPU per operation: fileferry against pyftpdlib, vsftpd and pure-ftpd.

    .venv/bin/python bench/cpuop.py                     # 10,000 operations per row
    .venv/bin/python bench/cpuop.py --quick             # 2,000 per row
    .venv/bin/python bench/cpuop.py --only noop,dele --servers fileferry,pyftpdlib
    .venv/bin/python bench/cpuop.py --baseline ../fileferry-before   # before/after
    .venv/bin/python bench/cpuop.py --write-docs        # the table into docs/benchmarks.md

Why CPU and not wall time: on a shared 2-core machine the load generator and
the server compete for the same cores, so "operations per second" mixes the
two. The server's own ``utime + stime`` (``/proc/PID/stat``, every thread of
the process, plus the reaped children of a forking server through
``cutime + cstime``) counts only the server's work, whatever the machine does
meanwhile. Each row is N operations in lockstep (one request, wait for its
answer), and the figure is CPU microseconds per operation.

The client here is a small blocking raw-socket FTP client: its own cost does
not matter (it is not measured), only that it drives every server the same
way. Rows run interleaved: every row, then every server in a rotated order,
``--rounds`` times with N / rounds operations each, so a noisy moment lands
on every server. Listing rows run fewer operations (N / 10 for 1,000
entries, N / 100 for 10,000), each one a whole LIST over a data connection.

Nothing here installs anything (see bench/README.md); a server that is
missing is skipped with the reason.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import servers as srv

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
BEGIN, END = "<!-- cpuop:begin -->", "<!-- cpuop:end -->"
TICK = os.sysconf("SC_CLK_TCK")
SMALL = 4096
TIMEOUT = 30.0

#: Row -> (label, divisor of N for this row).
ROWS: dict[str, tuple[str, int]] = {
    "connect": ("connect + QUIT", 1),
    "login": ("login (connect, USER, PASS, QUIT)", 1),
    "noop": ("NOOP", 1),
    "retr": ("PASV + RETR 4 KiB", 1),
    "stor": ("PASV + STOR 4 KiB", 1),
    "dele": ("DELE", 1),
    "mkdrmd": ("MKD + RMD", 1),
    "list1k": ("PASV + LIST of 1,000", 10),
    "list10k": ("PASV + LIST of 10,000", 100),
}


# --- CPU of a process tree -------------------------------------------------------


def _stat(pid: int) -> tuple[int, int]:
    """(ppid, utime + stime + cutime + cstime in ticks) of one process."""
    with open(f"/proc/{pid}/stat", "rb") as fh:
        raw = fh.read()
    fields = raw[raw.rindex(b")") + 2 :].split()
    # fields[0] is the state (field 3 of the man page): utime is field 14.
    return int(fields[1]), sum(int(f) for f in fields[11:15])


def tree_cpu(root: int) -> float:
    """Seconds of CPU used by ``root`` and its live descendants, and by the reaped ones.

    A reaped child's time moved into its parent's ``cutime``/``cstime``, and a
    live process's own counters never include a child that is still alive, so
    summing all four counters over the live tree counts every tick once.
    """
    ticks: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ticks[int(entry)] = _stat(int(entry))
            except (OSError, ValueError):
                continue
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in ticks.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += ticks.get(pid, (0, 0))[1]
        todo.extend(children.get(pid, ()))
    return total / TICK


def settled_cpu(root: int, deadline: float = 5.0) -> float:
    """The tree's CPU once it stopped moving (forked children exit after the reply)."""
    end = time.monotonic() + deadline
    last = tree_cpu(root)
    while time.monotonic() < end:
        time.sleep(0.05)
        now = tree_cpu(root)
        if now == last:
            return now
        last = now
    return last


# --- a lockstep client -------------------------------------------------------------------


class FTPError(Exception):
    """An unexpected reply."""


class Control:
    """One control connection, blocking, with a reply parser that handles multi-line replies."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def reply(self) -> tuple[int, str]:
        first = None
        while True:
            while b"\n" not in self.buf:
                data = self.sock.recv(65536)
                if not data:
                    raise FTPError("connection closed")
                self.buf += data
            line, _, self.buf = self.buf.partition(b"\n")
            if first is None:
                first = line
                if line[3:4] != b"-":
                    return int(line[:3]), line.decode(errors="replace")
            elif line[:3] == first[:3] and line[3:4] == b" ":
                return int(first[:3]), first.decode(errors="replace")

    def cmd(self, line: str, *expect: int) -> str:
        self.sock.sendall(line.encode() + b"\r\n")
        code, text = self.reply()
        if expect and code not in expect:
            raise FTPError(f"{line.split()[0]}: {text}")
        return text

    def expect(self, *codes: int) -> str:
        code, text = self.reply()
        if code not in codes:
            raise FTPError(text)
        return text

    def login(self, user: str, password: str) -> None:
        self.expect(220)
        if self.cmd(f"USER {user}", 230, 331).startswith("331"):
            self.cmd(f"PASS {password}", 230)

    def close(self) -> None:
        self.sock.close()

    def pasv(self) -> socket.socket:
        text = self.cmd("PASV", 227)
        m = re.search(r"(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)", text)
        if m is None:
            raise FTPError(text)
        port = int(m.group(5)) * 256 + int(m.group(6))
        return socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)


def drain(sock: socket.socket) -> int:
    got = 0
    while data := sock.recv(262144):
        got += len(data)
    sock.close()
    return got


# --- the operations -------------------------------------------------------------------


class Runner:
    """Runs ``n`` operations of one row against one server; returns the server CPU used."""

    def __init__(self, server: srv.Server, payload: bytes) -> None:
        self.server = server
        self.payload = payload
        self.stored = 0

    def session(self) -> Control:
        c = Control(self.server.port)
        c.login(self.server.user, self.server.password)
        c.cmd("TYPE I", 200)
        return c

    def run(self, row: str, n: int) -> float:
        prepare: Callable[[], Control | None] = getattr(self, f"prep_{row}", self.session)
        session = prepare()
        before = settled_cpu(self.server.pid)
        getattr(self, f"op_{row}")(session, n)
        after = settled_cpu(self.server.pid)
        if session is not None:
            session.cmd("QUIT")
            session.close()
        return after - before

    def prep_connect(self) -> None:
        return None

    prep_login = prep_connect

    def op_connect(self, _: None, n: int) -> None:
        for _ in range(n):
            c = Control(self.server.port)
            c.expect(220)
            c.cmd("QUIT", 221)
            c.close()

    def op_login(self, _: None, n: int) -> None:
        for _ in range(n):
            c = Control(self.server.port)
            c.login(self.server.user, self.server.password)
            c.cmd("QUIT", 221)
            c.close()

    def op_noop(self, c: Control, n: int) -> None:
        for _ in range(n):
            c.cmd("NOOP", 200)

    def op_retr(self, c: Control, n: int) -> None:
        for _ in range(n):
            data = c.pasv()
            c.cmd("RETR small.bin", 150, 125)
            if drain(data) != SMALL:
                raise FTPError("short RETR")
            c.expect(226)

    def op_stor(self, c: Control, n: int) -> None:
        for _ in range(n):
            data = c.pasv()
            c.cmd(f"STOR up/s{self.stored}", 150, 125)
            data.sendall(self.payload)
            data.close()
            c.expect(226)
            self.stored += 1

    def op_dele(self, c: Control, n: int) -> None:
        # Deletes what the STOR row stored; tops it up first if that row did not run.
        top_up = max(0, n - self.stored)
        if top_up:
            for i in range(top_up):
                (self.server.root / "up" / f"s{self.stored + i}").write_bytes(self.payload)
            self.stored += top_up
        first = self.stored - n
        for i in range(first, self.stored):
            c.cmd(f"DELE up/s{i}", 250)
        self.stored = first

    def op_mkdrmd(self, c: Control, n: int) -> None:
        for _ in range(n):
            c.cmd("MKD up/d", 257)
            c.cmd("RMD up/d", 250)

    def _list(self, c: Control, n: int, folder: str) -> None:
        for _ in range(n):
            data = c.pasv()
            c.cmd(f"LIST {folder}", 150, 125)
            if drain(data) == 0:
                raise FTPError("empty LIST")
            c.expect(226)

    def op_list1k(self, c: Control, n: int) -> None:
        self._list(c, n, "list1k")

    def op_list10k(self, c: Control, n: int) -> None:
        self._list(c, n, "list10k")


# --- fixtures and servers --------------------------------------------------------------


def make_root(root: Path, payload: bytes) -> None:
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    os.chmod(root, 0o755)
    (root / "small.bin").write_bytes(payload)
    os.chmod(root / "small.bin", 0o644)
    for name, count in (("list1k", 1000), ("list10k", 10000)):
        (root / name).mkdir()
        os.chmod(root / name, 0o755)
        for i in range(count):
            (root / name / f"entry-{i:05d}.dat").write_bytes(b"")
    (root / "up").mkdir()
    os.chmod(root / "up", 0o777)


STARTERS: dict[str, tuple[Callable[..., None], dict[str, Any]]] = {
    "fileferry": (srv.start_fileferry, {}),
    "fileferry-base": (srv.start_fileferry, {}),
    "pyftpdlib": (srv.start_pyftpdlib, {}),
    "vsftpd": (srv.start_vsftpd, {}),
    "pure-ftpd": (srv.start_pureftpd, {}),
}


def start(names: list[str], work: Path, payload: bytes, baseline: Path | None) -> list[srv.Server]:
    started = []
    for name in names:
        if name == "fileferry-base" and baseline is None:
            continue
        starter, opts = STARTERS[name]
        opts = dict(opts)
        if name == "fileferry-base":
            opts["source"] = baseline
        server = srv.Server(name=name, root=work / "roots" / name, tls=False)
        make_root(server.root, payload)
        server.port = srv.free_port()
        try:
            starter(server, work, **opts)
        except (srv.Unavailable, OSError, Exception) as exc:
            print(f"  skip {name}: {exc}", flush=True)
            continue
        print(f"  {name:15} {server.version}  port {server.port}", flush=True)
        started.append(server)
    return started


# --- report ------------------------------------------------------------------------------


def ls_reference(root: Path, rows: list[str], n: int) -> dict[str, float]:
    """CPU µs of ``ls -lnU`` over the same folders: the physical floor of a listing.

    ``ls -lnU`` does what any LIST must (read the folder, ``lstat`` each
    entry, format a line) and nothing more (``-n``: no user name look-ups,
    ``-U``: no sorting); GNU ls adds two extended-attribute reads per entry,
    so it is a generous floor. Its CPU comes from ``RUSAGE_CHILDREN``.
    """
    import resource
    import subprocess

    ls = shutil.which("ls")
    out: dict[str, float] = {}
    for row, folder in (("list1k", "list1k"), ("list10k", "list10k")):
        if row not in rows or ls is None:
            continue
        count = max(1, n // ROWS[row][1])
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        for _ in range(count):
            subprocess.run([ls, "-lnU", str(root / folder)], stdout=subprocess.DEVNULL, check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        secs = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        out[row] = secs / count * 1e6
    return out


def table(results: dict[str, Any]) -> str:
    """Markdown: µs of server CPU per operation, and fileferry's ratio to each peer."""
    names = list(results["servers"])
    head = "| row | " + " | ".join(names) + " |"
    lines = [head, "|---" * (len(names) + 1) + "|"]
    for row, (label, _) in ROWS.items():
        per = {s: results["per_op"].get(s, {}).get(row) for s in names}
        if all(v is None for v in per.values()):
            continue
        ours = per.get("fileferry")
        cells = []
        for s in names:
            v = per[s]
            if v is None:
                cells.append("")
            elif s == "fileferry" or not ours:
                cells.append(f"{v:,.0f}")
            else:
                cells.append(f"{v:,.0f} ({v / ours:.2f}x)")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def doc_block(results: dict[str, Any]) -> str:
    return "\n".join(
        [
            BEGIN,
            "## Server CPU per operation",
            "",
            f"Measured {results['when']} with `bench/cpuop.py`: {results['n']:,} operations per "
            f"row ({results['rounds']} interleaved rounds; LIST rows N/10 and N/100), one "
            "lockstep client on loopback. Microseconds of the server's own CPU (`utime + stime` "
            "from `/proc/PID/stat`, every thread, plus reaped children) per operation, median "
            "over rounds; lower is better. In brackets: the peer's CPU over fileferry's "
            "(>= 1.00x: fileferry uses no more CPU than that peer)."
            + (f" {results['note']}" if results.get("note") else ""),
            "",
            table(results),
            "",
            "Versions: " + "; ".join(f"{k}: {v}" for k, v in results["servers"].items() if v) + ".",
            END,
        ]
    )


def write_docs(results: dict[str, Any]) -> None:
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    block = doc_block(results)
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    DOC.write_text(text)
    print(f"wrote {DOC}")


# --- main ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=10_000, help="operations per row (default 10,000)")
    p.add_argument("--quick", action="store_true", help="2,000 operations per row")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default 2)")
    p.add_argument("--only", help=f"rows, comma-separated: {','.join(ROWS)}")
    p.add_argument("--servers", default="fileferry,fileferry-base,pyftpdlib,vsftpd,pure-ftpd")
    p.add_argument("--no-ls", action="store_true", help="skip the ls -lnU reference of LIST")
    p.add_argument("--baseline", type=Path, help="another checkout, run as fileferry-base")
    p.add_argument("--work", default="/tmp/fileferry-cpuop", help="server roots, results")
    p.add_argument("--write-docs", action="store_true", help="the table into docs/benchmarks.md")
    p.add_argument("--from-json", help="report on a saved results.json instead of running")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results = json.loads(Path(args.from_json).read_text()) if args.from_json else measure(args)
    print(table(results))
    if args.write_docs:
        write_docs(results)
    return 0


def measure(args: argparse.Namespace) -> dict[str, Any]:
    n = 2_000 if args.quick else args.n
    rows = [r.strip() for r in args.only.split(",")] if args.only else list(ROWS)
    unknown = set(rows) - set(ROWS)
    if unknown:
        raise SystemExit(f"unknown rows: {', '.join(sorted(unknown))}")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    payload = os.urandom(SMALL)
    print("servers:", flush=True)
    servers = start(args.servers.split(","), work, payload, args.baseline)
    runners = {s.name: Runner(s, payload) for s in servers}
    samples: dict[str, dict[str, list[float]]] = {}
    try:
        for rnd in range(args.rounds):
            for row in rows:
                count = max(1, n // ROWS[row][1] // args.rounds)
                k = rnd % max(1, len(servers))
                for server in servers[k:] + servers[:k]:
                    try:
                        secs = runners[server.name].run(row, count)
                    except (OSError, FTPError) as exc:
                        print(f"  r{rnd + 1} {row:8} {server.name:15} FAILED {exc}", flush=True)
                        continue
                    per = secs / count * 1e6
                    samples.setdefault(server.name, {}).setdefault(row, []).append(per)
                    print(f"  r{rnd + 1} {row:8} {server.name:15} {per:9.1f} µs/op", flush=True)
    finally:
        srv.kill_all(servers)
    if servers and not args.no_ls:
        reference = ls_reference(servers[0].root, rows, n)
        for row, per in reference.items():
            samples.setdefault("ls -lnU", {}).setdefault(row, []).append(per)
    results = {
        "when": time.strftime("%Y-%m-%d"),
        "n": n,
        "rounds": args.rounds,
        "servers": {s.name: s.version for s in servers} | {"ls -lnU": "GNU ls, the same folders"},
        "per_op": {
            name: {row: statistics.median(v) for row, v in rows_.items()}
            for name, rows_ in samples.items()
        },
        "samples": samples,
    }
    (work / "results.json").write_text(json.dumps(results, indent=1))
    print(f"results saved to {work / 'results.json'}")
    return results


if __name__ == "__main__":
    raise SystemExit(main())
