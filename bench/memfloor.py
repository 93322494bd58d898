"""Where a ready server's memory goes: floors by component, then idle and 300 sessions.

    .venv/bin/python bench/memfloor.py
    .venv/bin/python bench/memfloor.py --baseline ../fileferry-before   # before/after
    .venv/bin/python bench/memfloor.py --sessions 300 --servers fileferry,pyftpdlib

Two parts, in one run so that both see the same machine:

1. **Floors.** One child Python imports the modules ``fileferry serve`` needs,
   step by step in the order the server does (interpreter, ``ssl``, asyncio,
   uvloop, argparse, fileferry's config, its server), and the memory is read
   from ``/proc/PID/smaps_rollup`` after each step. The same is done for
   pyftpdlib's server modules. Each figure is cumulative; the difference
   between two rows is what that component costs on top of the ones before.
2. **Servers.** Each server is started as ``bench/run.py`` starts it, its
   memory read once it answers (idle), then ``bench/loadgen.py logins
   --pause`` logs ``--sessions`` clients in and holds them: the memory with
   every session open, and the peak sampled meanwhile.

Three figures per line: RSS (every resident page, shared ones in full),
PSS (shared pages split among the processes that map them: libpython is
shared with every other Python on the machine, so PSS moves with what else
runs) and USS (private pages only: what the process alone costs). The
pyftpdlib rows come twice: as the benchmark venv runs it (with pyOpenSSL
installed, its import pulls in ``cryptography``) and with pyOpenSSL hidden
(``sys.modules["OpenSSL"] = None``): pyftpdlib's smallest server, the fair bar.

Bytecode: every server runs from compiled bytecode, as an installed package
does (pip compiles it at install). An editable checkout under
``PYTHONDONTWRITEBYTECODE=1`` would otherwise compile fileferry's source at
every start, and the compiler's freed scraps stay in the heap: ~2 MiB of
RSS that no installed server carries. So the children get a fresh
``PYTHONPYCACHEPREFIX`` (in the temp dir), warmed by starting each server
once; ``fileferry-nopyc`` shows the other case.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import memory
import servers as srv

HERE = Path(__file__).resolve().parent
LOADGEN = HERE / "loadgen.py"
MIB = 1024 * 1024

#: (label, statement) steps, cumulative, in the order ``fileferry serve`` imports them.
FILEFERRY_STEPS: tuple[tuple[str, str], ...] = (
    ("python (site)", "pass"),
    ("+ ssl (libssl, libcrypto)", "import ssl"),
    ("+ asyncio", "import asyncio"),
    ("+ uvloop", "import uvloop"),
    ("+ argparse", "import argparse"),
    ("+ fileferry.cli + serve", "import fileferry.cli.serve"),
    ("+ fileferry.server.app", "import fileferry.server.app"),
    ("+ the local backends", "import fileferry.backends.local, fileferry.backends.static"),
)
PYFTPDLIB_STEPS: tuple[tuple[str, str], ...] = (
    ("python (site)", "pass"),
    ("+ pyftpdlib.servers", "import pyftpdlib.servers"),
    ("+ pyftpdlib.handlers, authorizers", "import pyftpdlib.handlers, pyftpdlib.authorizers"),
)
#: Reference points that are not cumulative: each a fresh interpreter.
ALONE: tuple[tuple[str, str, str], ...] = (
    ("import asyncio", "import asyncio", ""),
    ("import asyncio, ssl kept out", "import asyncio", "ssl"),
    ("import asyncio, uvloop", "import asyncio, uvloop", ""),
)

_STEPPER = r"""
import sys, json
for name in filter(None, sys.argv[1].split(",")):
    sys.modules[name] = None
print("ready", flush=True)
for line in sys.stdin:
    try:
        exec(line)
        print("ok", flush=True)
    except Exception as exc:
        print("failed " + repr(exc), flush=True)
"""


def _uss(pid: int) -> int:
    total = 0
    with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
        for line in fh:
            if line.startswith((b"Private_Clean:", b"Private_Dirty:")):
                total += int(line.split()[1]) * 1024
    return total


def _figures(pid: int) -> dict[str, float]:
    usage = memory.tree_usage(pid)
    return {"rss": usage.rss / MIB, "pss": usage.pss / MIB, "uss": _uss(pid) / MIB}


Steps = list[tuple[str, dict[str, float] | str]]


def steps(plan: tuple[tuple[str, str], ...], blocked: str = "") -> Steps:
    """Run ``plan`` in one interpreter; the memory after each step."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _STEPPER, blocked], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    out: list[tuple[str, dict[str, float] | str]] = []
    try:
        assert proc.stdout.readline().strip() == "ready"
        for name, statement in plan:
            proc.stdin.write(statement + "\n")
            proc.stdin.flush()
            answer = proc.stdout.readline().strip()
            out.append((name, _figures(proc.pid) if answer == "ok" else answer))
    finally:
        proc.kill()
        proc.wait()
    return out


def sessions(server: srv.Server, count: int) -> dict[str, float]:
    """Idle memory, then with ``count`` logged-in sessions held open, and the peak."""
    result = {f"idle_{k}": v for k, v in _figures(server.pid).items()}
    argv = [sys.executable, str(LOADGEN), "127.0.0.1", str(server.port), "logins"]
    argv += ["--clients", str(count), "--pause", "--user", server.user]
    argv += ["--password", server.password]
    with memory.PeakSampler(server.pid, interval=0.05) as sampler:
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert proc.stdin is not None and proc.stdout is not None
        first = proc.stdout.readline()
        if not first.strip():
            raise RuntimeError(f"{server.name}: logins failed: {proc.communicate(timeout=60)[1]}")
        # Let the last replies' buffers settle before the reading.
        time.sleep(0.5)
        held = _figures(server.pid)
        proc.stdin.write("\n")
        proc.stdin.flush()
        rest, err = proc.communicate(timeout=600)
    done = json.loads(rest or "{}")
    if done.get("failed", 1):
        raise RuntimeError(f"{server.name}: {done.get('failed')} sessions failed: {err[-500:]}")
    result.update({f"held_{k}": v for k, v in held.items()})
    result["peak_rss"] = sampler.peak.rss / MIB
    result["peak_pss"] = sampler.peak.pss / MIB
    return result


_PYFTPDLIB_NO_OPENSSL = "import sys\nsys.modules['OpenSSL'] = None\n"


@contextlib.contextmanager
def _environment(**changes: str | None) -> Iterator[None]:
    """Children started inside see ``changes`` (None: unset); restored after."""
    saved = {k: os.environ.get(k) for k in changes}
    try:
        for key, value in changes.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def start(name: str, work: Path, baseline: Path | None) -> srv.Server:
    root = work / f"root-{name}"
    root.mkdir(parents=True, exist_ok=True)
    server = srv.Server(name, root=root, port=srv.free_port())
    if name == "fileferry":
        srv.start_fileferry(server, work)
    elif name == "fileferry-asyncio":
        with _environment(FILEFERRY_NO_UVLOOP="1"):
            srv.start_fileferry(server, work)
    elif name == "fileferry-nopyc":
        with _environment(PYTHONDONTWRITEBYTECODE="1", PYTHONPYCACHEPREFIX=None):
            srv.start_fileferry(server, work)
    elif name == "fileferry-base":
        if baseline is None:
            raise srv.Unavailable("no --baseline")
        srv.start_fileferry(server, work, source=baseline)
    elif name == "pyftpdlib":
        srv.start_pyftpdlib(server, work)
    elif name == "pyftpdlib-no-openssl":
        script = work / "pyftpdlib_no_openssl.py"
        script.write_text(_PYFTPDLIB_NO_OPENSSL + srv._PYFTPDLIB)
        argv = [srv.PYTHON, str(script), str(root), str(server.port), ""]
        srv.spawn(server, argv, work)
    else:
        raise srv.Unavailable(f"unknown server {name}")
    return server


def report(floors: dict[str, Steps], servers: dict[str, dict[str, float]], count: int) -> str:
    lines = ["Floors (cumulative, MiB):", f"  {'':44s} {'RSS':>6s} {'PSS':>6s} {'USS':>6s}"]
    for title, rows in floors.items():
        lines.append(f"  {title}")
        for name, fig in rows:
            if isinstance(fig, str):
                lines.append(f"    {name:42s} {fig}")
            else:
                lines.append(
                    f"    {name:42s} {fig['rss']:6.1f} {fig['pss']:6.1f} {fig['uss']:6.1f}"
                )
    lines.append("")
    lines.append(f"Servers (MiB; {count} sessions logged in and held):")
    head = ("idle RSS", "idle PSS", "idle USS", "held RSS", "held PSS", "held USS", "peak PSS")
    lines.append(f"  {'':22s} " + " ".join(f"{h:>9s}" for h in head))
    keys = ("idle_rss", "idle_pss", "idle_uss", "held_rss", "held_pss", "held_uss", "peak_pss")
    for name, r in servers.items():
        if "error" in r:
            lines.append(f"  {name:22s} {r['error']}")
            continue
        lines.append(f"  {name:22s} " + " ".join(f"{r[k]:9.1f}" for k in keys))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sessions", type=int, default=300)
    p.add_argument(
        "--servers",
        default="fileferry,fileferry-base,fileferry-asyncio,fileferry-nopyc,pyftpdlib,"
        "pyftpdlib-no-openssl",
    )
    p.add_argument("--baseline", type=Path, help="another checkout, run as fileferry-base")
    p.add_argument("--rounds", type=int, default=1, help="start every server this many times")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fileferry-memfloor-") as tmp:
        work = Path(tmp)
        with _environment(PYTHONPYCACHEPREFIX=str(work / "pyc"), PYTHONDONTWRITEBYTECODE=None):
            for name in args.servers.split(","):  # warm the bytecode cache
                with contextlib.suppress(srv.Unavailable):
                    start(name, work, args.baseline).stop()
            floors, results = _measure(args, work)
    print(report(floors, results, args.sessions))
    if args.json:
        args.json.write_text(json.dumps({"floors": floors, "servers": results}, indent=1))
    return 0


def _measure(
    args: argparse.Namespace, work: Path
) -> tuple[dict[str, Steps], dict[str, dict[str, float]]]:
    floors = {
        "fileferry serve's imports": steps(FILEFERRY_STEPS),
        "pyftpdlib's server": steps(PYFTPDLIB_STEPS),
        "pyftpdlib's server, pyOpenSSL hidden": steps(PYFTPDLIB_STEPS, "OpenSSL"),
    }
    floors["alone (fresh interpreters)"] = [
        (name, steps(((name, stmt),), blocked)[0][1]) for name, stmt, blocked in ALONE
    ]
    results: dict[str, dict[str, float]] = {}
    for _round in range(args.rounds):
        for name in args.servers.split(","):
            try:
                server = start(name, work, args.baseline)
            except srv.Unavailable as exc:
                results.setdefault(name, {"error": f"skipped: {exc}"})
                continue
            try:
                got = sessions(server, args.sessions)
            finally:
                server.stop()
            # Keep the smallest idle and the largest peak over rounds: both are the
            # figure a noisy neighbour can only make worse.
            prev = results.get(name)
            if prev is None or "error" in prev:
                results[name] = got
            else:
                results[name] = {k: (min if k.startswith("idle") else max)(prev[k], v)
                                 for k, v in got.items()}  # fmt: skip
    return floors, results


if __name__ == "__main__":
    raise SystemExit(main())
