"""Tables and the chart of a benchmark run: text for the terminal, Markdown + PNG for docs/.

A ratio is "how many times better fileferry is than that peer": throughput
divided by throughput, or the peer's time (memory) divided by fileferry's,
so >= 1.0 always means fileferry leads. The hand-written profile notes live
in ``bench/notes.md`` and are spliced into ``docs/benchmarks.md`` unchanged,
so regenerating the numbers never loses the analysis.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "benchmarks.md"
CHART = REPO / "docs" / "benchmarks.png"
NOTES = Path(__file__).resolve().parent / "notes.md"

PEERS = ("pyftpdlib", "vsftpd", "pure-ftpd")
#: ``run.py --baseline``: an older checkout, compared like a peer in the table
#: (ratio >= 1.0: this checkout is ahead of it); never in the chart or the docs.
BASELINE = "fileferry-base"
VARIANTS = ("fileferry-w2", "fileferry-fsync")
MAIN = "fileferry"
CEILING = "ceiling"


def metrics(sizes: dict[str, int]) -> list[tuple[str, str, str, bool]]:
    """(key, label, unit, higher_is_better) for every metric, in report order."""
    big = f"{sizes['big'] // 2**20} MiB"
    n = sizes["clients"]
    each = f"{sizes['each'] // 2**20} MiB"
    small = f"{sizes['small_size'] // 1024} KiB"
    return [
        ("a_retr", f"(a) RETR {big}, one stream", "MB/s", True),
        ("b_stor", f"(b) STOR {big}, one stream", "MB/s", True),
        ("c_login", f"(c) {n} clients log in at once", "s", False),
        ("c_quit", f"(c) {n} x QUIT", "s", False),
        ("d_retr_many", f"(d) {n} x RETR {each} at once", "s", False),
        ("e_stor_many", f"(e) {n} x STOR {each} at once", "s", False),
        ("f_retr_idle", f"(f) RETR {big}, {sizes['idle']} idle sessions", "MB/s", True),
        ("f_stor_idle", f"(f) STOR {big}, {sizes['idle']} idle sessions", "MB/s", True),
        ("g_pss_start", "(g) PSS at start", "MiB", False),
        ("g_pss_sessions", f"(g) PSS with {n} sessions", "MiB", False),
        ("g_pss_peak", "(g) PSS peak", "MiB", False),
        ("g_rss_start", "(g) RSS at start", "MiB", False),
        ("g_rss_peak", "(g) RSS peak", "MiB", False),
        ("h_stor", f"(h) {sizes['small_count']} x STOR {small}, one client", "files/s", True),
        ("h_retr", f"(h) {sizes['small_count']} x RETR {small}, one client", "files/s", True),
        ("i_list", f"(i) LIST of {sizes['list_entries']:,} entries", "ms", False),
        ("tls_retr", f"FTPS RETR {big}, one stream", "MB/s", True),
        ("tls_stor", f"FTPS STOR {big}, one stream", "MB/s", True),
    ]


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def ratio(ours: float | None, theirs: float | None, higher: bool) -> float | None:
    if not ours or not theirs:
        return None
    return ours / theirs if higher else theirs / ours


def cell(results: dict[str, Any], server: str, key: str, spread: bool = False) -> str:
    values = results["samples"].get(server, {}).get(key)
    if not values:
        err = results.get("errors", {}).get(server, {})
        row = next((r for r in err if key.startswith(r.split("_")[0])), None)
        return "failed" if row else "-"
    median = statistics.median(values)
    if spread and len(values) > 1:
        return f"{_fmt(median)} ({_fmt(min(values))}-{_fmt(max(values))})"
    return _fmt(median)


def median(results: dict[str, Any], server: str, key: str) -> float | None:
    values = results["samples"].get(server, {}).get(key)
    return statistics.median(values) if values else None


def table_rows(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    present = results["servers"]
    peers = [p for p in (BASELINE, *PEERS) if p in present]
    variants = [v for v in VARIANTS if v in present]
    header = ["row", "unit", f"{MAIN} median (min-max)"]
    header += [f"{p} (ratio)" for p in peers] + variants
    header += ["ceiling"] if CEILING in present else []
    rows = []
    selected = tuple(results.get("rows", ()))
    for key, label, unit, higher in metrics(results["sizes"]):
        if (
            selected
            and not key.startswith("g_")
            and not any(key == r or key.startswith(r.split("_")[0] + "_") for r in selected)
        ):
            continue
        ours = median(results, MAIN, key)
        nobody = ours is None and not any(median(results, p, key) for p in peers)
        if nobody and not (key.startswith("tls_") and MAIN in present):
            continue
        line = [label, unit, cell(results, MAIN, key, spread=True)]
        if ours is None and key.startswith("tls_"):
            line[2] = "pending"
        for p in peers:
            theirs = median(results, p, key)
            r = ratio(ours, theirs, higher)
            line.append(f"{cell(results, p, key)} ({r:.2f}x)" if r else cell(results, p, key))
        for v in variants:
            line.append(cell(results, v, key))
        if CEILING in present:
            line.append("" if key.startswith("g_") else cell(results, CEILING, key))
        rows.append(line)
    return header, rows


def text_table(results: dict[str, Any]) -> str:
    header, rows = table_rows(results)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    for r in rows:
        out.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    out.append("ratio = how many times better fileferry is than that peer (>= 1.0: ahead)")
    for name, errs in results.get("errors", {}).items():
        for row, err in errs.items():
            out.append(f"error: {name} {row}: {err}")
    return "\n".join(out)


def markdown_table(results: dict[str, Any]) -> str:
    header, rows = table_rows(results)
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def chart(results: dict[str, Any], path: Path) -> bool:
    """Grouped bars of fileferry's ratio against each peer, log scale; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    peers = [p for p in PEERS if p in results["servers"]]
    items = []
    for key, label, _unit, higher in metrics(results["sizes"]):
        if key.startswith("g_rss"):
            continue
        ratios = [ratio(median(results, MAIN, key), median(results, p, key), higher) for p in peers]
        if any(ratios):
            items.append((label, ratios))
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(items) * max(1, len(peers)) / 2 + 1.5))
    height = 0.8 / max(1, len(peers))
    colors = ("#4c72b0", "#dd8452", "#55a868")
    for j, peer in enumerate(peers):
        ys = [i + j * height for i in range(len(items))]
        xs = [r[j] or 0 for _, r in items]
        ax.barh(ys, xs, height=height, label=peer, color=colors[j % len(colors)])
    ax.set_yticks([i + height * (len(peers) - 1) / 2 for i in range(len(items))])
    ax.set_yticklabels([label for label, _ in items], fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_xlabel("fileferry is this many times better (log scale; right of 1.0 = fileferry leads)")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"fileferry vs peers, medians of {results['sizes']['rounds']} interleaved rounds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def targets(results: dict[str, Any]) -> list[str]:
    """Issue #4's targets, row by row: against the best peer, FTPS, and the ceiling."""
    peers = [p for p in PEERS if p in results["servers"]]
    lines = []
    for key, label, _unit, higher in metrics(results["sizes"]):
        if key.startswith("g_rss") or key == "g_pss_start":
            continue
        ours = median(results, MAIN, key)
        if ours is None:
            continue
        if key.startswith("g_"):
            # Memory: at most pyftpdlib's (the forking C servers start at 2-3 MiB
            # but grow per session; the issue compares with pyftpdlib).
            theirs = {"pyftpdlib": median(results, "pyftpdlib", key)}
        elif key.startswith("tls_"):
            theirs = {"pyftpdlib x 1.5": (median(results, "pyftpdlib", key) or 0) * 1.5}
        else:
            theirs = {p: median(results, p, key) for p in peers}
        known = {p: v for p, v in theirs.items() if v}
        if not known:
            continue
        best_name = (max if higher else min)(known, key=lambda p: known[p])
        r = ratio(ours, known[best_name], higher)
        variant = ""
        w2 = median(results, "fileferry-w2", key)
        if w2 is not None:
            rw = ratio(w2, known[best_name], higher)
            variant = f"; with --workers 2: {rw:.2f}x" if rw else ""
        mark = "leads" if r is not None and r >= 1.0 else "behind"
        lines.append(f"- {label}: **{r:.2f}x** vs {best_name} ({mark}){variant}")
    for key in ("a_retr", "b_stor"):
        ours, ceiling = median(results, MAIN, key), median(results, CEILING, key)
        if ours and ceiling:
            share = ours / ceiling
            mark = "met" if share >= 0.7 else "not met"
            name = "(a) RETR" if key == "a_retr" else "(b) STOR"
            lines.append(f"- {name}: {share:.0%} of the load generator's ceiling ({mark}: >= 70%)")
    return lines


def write_docs(results: dict[str, Any]) -> None:
    DOC.parent.mkdir(exist_ok=True)
    has_chart = chart(results, CHART)
    m = results["machine"]
    s = results["sizes"]
    versions = "\n".join(
        f"- **{name}**: {info['version']}" + (f" ({info['note']})" if info["note"] else "")
        for name, info in results["servers"].items()
    )
    notes = NOTES.read_text().strip() if NOTES.exists() else "_No notes yet._"
    errors = [
        f"- {name}, {row}: {err}"
        for name, errs in results.get("errors", {}).items()
        for row, err in errs.items()
    ]
    parts = [
        "# Benchmarks",
        "",
        "<!-- Generated by `python bench/run.py --write-docs`; edit bench/notes.md "
        "for the analysis, not this file. -->",
        "",
        f"Measured {results['when']} with `bench/run.py`: {s['rounds']} interleaved rounds, one "
        f"load generator (`bench/loadgen.py`, asyncio, raw sockets), {s['clients']} clients for "
        "the concurrent rows, every server on loopback with its own root on the same "
        f"page-cached files. Total run time {results['seconds']} s. Medians, with min-max for "
        "fileferry; in brackets, **how many times better fileferry is** than that peer "
        "(>= 1.00x: fileferry leads; times and memory are inverted so that higher is better). "
        "*ceiling* is the trivial in-memory responder (`bench/responder.py`): what the load "
        "generator itself can reach.",
        "",
        markdown_table(results),
        "",
    ]
    if has_chart:
        parts += ["![fileferry's ratio against each peer](benchmarks.png)", ""]
    if errors:
        parts += ["Failures during the run:", "", *errors, ""]
    parts += [
        "## Against the targets of issue #4",
        "",
        "fileferry's median against the best peer's for each row (>= 1.00x: leads); FTPS "
        "against 1.5 x pyftpdlib's FTPS; memory against pyftpdlib's.",
        "",
        *targets(results),
        "",
    ]
    parts += [
        "## Machine and versions",
        "",
        f"- {m['cpu']}, {m['cores']} cores, {m['memory']}; {m['os']}, Linux {m['kernel']}; "
        f"Python {m['python']}",
        versions,
        "",
        "## Where the time goes",
        "",
        notes,
        "",
    ]
    # The per-operation CPU table is written by bench/cpuop.py: keep it across runs.
    old = DOC.read_text() if DOC.exists() else ""
    begin, end = "<!-- cpuop:begin -->", "<!-- cpuop:end -->"
    if begin in old and end in old:
        parts += [begin + old.split(begin, 1)[1].split(end, 1)[0] + end, ""]
    DOC.write_text("\n".join(parts))
    print(f"wrote {DOC}" + (f" and {CHART}" if has_chart else ""))
