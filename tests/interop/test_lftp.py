"""Interoperability with lftp as a subprocess.

lftp is a demanding client: it uses FEAT, MLSD, REST, MFMT, several parallel
connections (``pget``, ``mirror --parallel``) and ABOR when it has what it
wants. Transfers are compared by sha256; listings are parsed. lftp's debug
log (``debug -t 5``, on stderr) shows what went over the control connection,
so tests also check that the intended commands were used.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from interop_helpers import (
    HUGE_SIZE,
    ODD_NAMES,
    PASSWORD,
    SIZES,
    USER,
    Lftp,
    Server,
    ServerFactory,
    file_sha256,
    lftp_quote,
    make_sparse,
    make_tree,
    parse_ls_lines,
    payload,
    sha256,
    tree_digests,
)

ALICE = (USER, PASSWORD)
CHINESE = "中文文件名.txt"
CHINESE_DIR = "目录"

q = lftp_quote


def sent(err: str) -> list[str]:
    """Commands lftp sent, from its debug log (``---> CMD args``)."""
    return [m.group(1) for m in re.finditer(r"---> (.*)$", err, re.MULTILINE)]


def verbs(err: str) -> list[str]:
    return [cmd.split(" ", 1)[0].upper() for cmd in sent(err)]


def received(err: str) -> list[str]:
    return [m.group(1) for m in re.finditer(r"<--- (.*)$", err, re.MULTILINE)]


_CLS_LINE = re.compile(
    r"^(?P<mode>[-dl][-rwxsStT]{9})\s+(?P<size>\d+)\s+"
    r"(?P<month>[A-Z][a-z]{2})\s+(?P<day>\d{1,2})\s+(?:\d{2}:\d{2}|\d{4}) (?P<name>.+)$"
)


def parse_cls_long(text: str) -> dict[str, tuple[str, int]]:
    """lftp's own ``cls -l`` format: ``mode size date name`` → {name: (mode, size)}."""
    out = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        m = _CLS_LINE.match(line)
        assert m is not None, f"unparseable cls -l line: {line!r}"
        out[m["name"].removesuffix("/")] = (m["mode"], int(m["size"]))
    return out


# --- get and put ------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_get_and_put(lftp: Lftp, server: Server, workdir: Path, size: int) -> None:
    down, up = payload(size, seed=1), payload(size, seed=2)
    (server.root / "down.bin").write_bytes(down)
    (workdir / "up.bin").write_bytes(up)
    r = lftp.ok(server, "get down.bin -o got.bin", "put up.bin -o put.bin", user=ALICE)
    assert file_sha256(workdir / "got.bin") == sha256(down)
    assert file_sha256(server.root / "put.bin") == sha256(up)
    assert "RETR down.bin" in sent(r.err)
    assert "STOR put.bin" in sent(r.err)
    assert "230 Login successful." in received(r.err)


def test_cat(lftp: Lftp, server: Server) -> None:
    data = b"hello from fileferry\nsecond line\n"
    (server.root / "hello.txt").write_bytes(data)
    r = lftp.ok(server, "cat hello.txt", debug=False)
    assert r.stdout == data


def test_ascii_round_trip(lftp: Lftp, server: Server, workdir: Path) -> None:
    text = b"one\ntwo\n\nthree\n"
    (server.root / "t.txt").write_bytes(text)
    (workdir / "local.txt").write_bytes(text)
    r = lftp.ok(server, "get -a t.txt -o got.txt", "put -a local.txt -o put.txt")
    # lftp sends no TYPE A here: it relies on ASCII being the RFC 959 default type.
    # The server's 150 replies say which type it really used.
    opened = [line for line in received(r.err) if line.startswith("150 ")]
    assert len(opened) == 2, r.err
    assert all("ASCII" in line for line in opened), opened
    assert (workdir / "got.txt").read_bytes() == text
    assert (server.root / "put.txt").read_bytes() == text


# --- mirror ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [("set ftp:use-mlsd yes",), ("set ftp:use-mlsd no",)],
    ids=["mlsd", "list"],
)
@pytest.mark.parametrize("parallel", [1, 4])
def test_mirror_download(
    lftp: Lftp, server: Server, workdir: Path, settings: tuple[str, ...], parallel: int
) -> None:
    expected = make_tree(server.root / "tree", files=50)
    assert len(expected) == 50
    r = lftp.ok(server, f"mirror --parallel={parallel} tree local", settings=settings)
    assert tree_digests(workdir / "local") == expected
    assert (workdir / "local" / "empty-dir").is_dir()
    listing_verb = "MLSD" if "yes" in settings[0] else "LIST"
    assert listing_verb in verbs(r.err)


def test_mirror_parallel_with_pget(lftp: Lftp, server: Server, workdir: Path) -> None:
    """Many connections at once: 5 files in parallel, each fetched in 4 segments."""
    files = {f"f{i}.bin": payload(3 * 1024 * 1024 + i, seed=20 + i) for i in range(5)}
    (server.root / "mp").mkdir()
    for name, data in files.items():
        (server.root / "mp" / name).write_bytes(data)
    lftp.ok(server, "mirror --parallel=5 --use-pget-n=4 mp local")
    assert tree_digests(workdir / "local") == {n: sha256(d) for n, d in files.items()}


@pytest.mark.parametrize("parallel", [1, 4])
def test_mirror_upload(lftp: Lftp, server: Server, workdir: Path, parallel: int) -> None:
    expected = make_tree(workdir / "src", files=50, seed=5)
    lftp.ok(server, f"mirror -R --parallel={parallel} src remote/tree", user=ALICE)
    assert tree_digests(server.root / "remote" / "tree") == expected
    assert (server.root / "remote" / "tree" / "empty-dir").is_dir()
    # Mirroring again transfers nothing: sizes and times match.
    r = lftp.ok(server, "mirror -R src remote/tree", user=ALICE)
    assert "STOR" not in verbs(r.err)


def test_find_lists_tree(lftp: Lftp, server: Server) -> None:
    expected = make_tree(server.root / "tree", files=20, seed=9)
    r = lftp.ok(server, "cd tree", "find", debug=False)
    found = {line.removeprefix("./") for line in r.out.splitlines()}
    assert set(expected) <= found
    assert "empty-dir/" in found


# --- listings -------------------------------------------------------------------------


def _listing_fixture(root: Path) -> dict[str, tuple[int, bool]]:
    d = root / "dir"
    (d / "sub").mkdir(parents=True)
    expected = {"sub": (0, True)}
    for name, size in [("a.txt", 0), ("b.bin", 1), ("c.dat", 65536), ("with space", 5)]:
        (d / name).write_bytes(payload(size))
        expected[name] = (size, False)
    (d / CHINESE).write_bytes(payload(42))
    expected[CHINESE] = (42, False)
    return expected


def test_cls_long(lftp: Lftp, server: Server) -> None:
    expected = _listing_fixture(server.root)
    r = lftp.ok(server, "cd dir", "cls -l", debug=False)
    entries = parse_cls_long(r.out)
    assert set(entries) == set(expected)
    for name, (size, is_dir) in expected.items():
        mode, got_size = entries[name]
        assert mode.startswith("d") == is_dir, name
        if not is_dir:
            assert got_size == size, name


def test_cls_names(lftp: Lftp, server: Server) -> None:
    expected = _listing_fixture(server.root)
    r = lftp.ok(server, "cls -1 -F dir/", debug=False)
    names = [line.removeprefix("dir/") for line in r.out.splitlines() if line]
    assert sorted(names) == sorted(n + "/" if d else n for n, (_, d) in expected.items())


def test_ls_raw_list(lftp: Lftp, server: Server) -> None:
    expected = _listing_fixture(server.root)
    r = lftp.ok(server, "ls dir")
    assert "LIST dir" in sent(r.err)
    entries = parse_ls_lines(r.out)
    assert set(entries) == set(expected)
    for name, (size, is_dir) in expected.items():
        assert entries[name].is_dir == is_dir
        if not is_dir:
            assert entries[name].size == size


def test_nlist(lftp: Lftp, server: Server) -> None:
    expected = _listing_fixture(server.root)
    r = lftp.ok(server, "nlist dir")
    assert "NLST dir" in sent(r.err)
    names = sorted(line.rsplit("/", 1)[-1] for line in r.out.splitlines() if line)
    assert names == sorted(expected)


# --- file management ------------------------------------------------------------------


def test_mkdir_mv_rm_rmdir(lftp: Lftp, server: Server) -> None:
    root = server.root
    (root / "f.txt").write_bytes(b"file")
    (root / "old").mkdir()
    (root / "old" / "inner.txt").write_bytes(b"inner")
    (root / "doomed").mkdir()
    (root / "doomed" / "deep").mkdir()
    (root / "doomed" / "deep" / "x.bin").write_bytes(b"x")
    r = lftp.ok(
        server,
        "mkdir new",
        "mkdir -p p/q/r",
        "mv f.txt new/g.txt",
        "mv old renamed",
        "rm renamed/inner.txt",
        "rmdir renamed",
        "rm -r doomed",
        user=ALICE,
    )
    assert (root / "new").is_dir()
    assert (root / "p" / "q" / "r").is_dir()
    assert not (root / "f.txt").exists()
    assert (root / "new" / "g.txt").read_bytes() == b"file"
    assert not (root / "old").exists()
    assert not (root / "renamed").exists()
    assert not (root / "doomed").exists()
    assert {"MKD", "RNFR", "RNTO", "DELE", "RMD"} <= set(verbs(r.err))
    assert sorted(p.name for p in root.iterdir()) == ["new", "p"]


def test_rmdir_non_empty_fails(lftp: Lftp, server: Server) -> None:
    (server.root / "full").mkdir()
    (server.root / "full" / "x").write_bytes(b"x")
    r = lftp(server, "rmdir full")
    assert r.returncode != 0, r.log
    assert any(line.startswith("550") for line in received(r.err)), r.log
    assert (server.root / "full" / "x").exists()


def test_rm_missing_fails(lftp: Lftp, server: Server) -> None:
    r = lftp(server, "rm nothing-here")
    assert r.returncode != 0, r.log
    assert any(line.startswith("550") for line in received(r.err)), r.log


def test_missing_file_get_fails(lftp: Lftp, server: Server, workdir: Path) -> None:
    r = lftp(server, "get nothing-here")
    assert r.returncode != 0, r.log
    assert "550" in r.err
    assert not (workdir / "nothing-here").exists()


def test_read_only_anonymous(lftp: Lftp, start_server: ServerFactory, workdir: Path) -> None:
    srv = start_server(write=False)
    (srv.root / "f.txt").write_bytes(b"readable")
    (workdir / "up.txt").write_bytes(b"x")
    lftp.ok(srv, "get f.txt -o f.txt")
    assert (workdir / "f.txt").read_bytes() == b"readable"
    for cmd in ("put up.txt", "mkdir d", "rm f.txt", "mv f.txt g.txt"):
        r = lftp(srv, cmd)
        assert r.returncode != 0, f"{cmd}: {r.log}"
    assert sorted(p.name for p in srv.root.iterdir()) == ["f.txt"]
    # The same server lets the configured user write.
    lftp.ok(srv, "put up.txt", user=ALICE)
    assert (srv.root / "up.txt").read_bytes() == b"x"


# --- segmented download and resume ---------------------------------------------------

TEN_MIB = 10 * 1024 * 1024


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_pget(lftp: Lftp, server: Server, workdir: Path, size: int) -> None:
    data = payload(size, seed=3)
    (server.root / "big.bin").write_bytes(data)
    lftp.ok(server, "pget -n 4 big.bin -o big.bin")
    assert file_sha256(workdir / "big.bin") == sha256(data)


def test_pget_segments_in_parallel(lftp: Lftp, server: Server, workdir: Path) -> None:
    """Four connections, each REST + RETR of its own segment, each stopped by ABOR.

    A plain ``pget`` may legitimately fetch everything on its first connection
    when the other connections are slower to start, so this test fixes the
    segments in advance with lftp's own status file (``pget -c``). The first
    segment is kept tiny (8 bytes), which tells lftp to wait for the other
    connections instead of taking their segments over: the outcome does not
    depend on timing.
    """
    data = payload(TEN_MIB, seed=4)
    (server.root / "big.bin").write_bytes(data)
    cuts = [0, 8, 3_500_000, 7_000_001, TEN_MIB]
    status = [f"size={TEN_MIB}"]
    for i in range(4):
        status += [f"{i}.pos={cuts[i]}", f"{i}.limit={cuts[i + 1]}"]
    (workdir / "big.bin").write_bytes(b"")
    (workdir / "big.bin.lftp-pget-status").write_text("\n".join(status) + "\n")
    r = lftp.ok(server, "pget -c -n 4 big.bin -o big.bin")
    assert file_sha256(workdir / "big.bin") == sha256(data)
    commands = sent(r.err)
    for offset in cuts[1:4]:
        assert f"REST {offset}" in commands, r.err
    assert commands.count("RETR big.bin") == 4
    assert not (workdir / "big.bin.lftp-pget-status").exists()


def test_get_resume_of_complete_file(lftp: Lftp, server: Server, workdir: Path) -> None:
    data = payload(100_000, seed=5)
    (server.root / "f.bin").write_bytes(data)
    (workdir / "f.bin").write_bytes(data)
    lftp.ok(server, "get -c f.bin")
    assert file_sha256(workdir / "f.bin") == sha256(data)


def test_get_resume(lftp: Lftp, server: Server, workdir: Path) -> None:
    data = payload(3 * 1024 * 1024 + 1, seed=5)
    (server.root / "big.bin").write_bytes(data)
    (workdir / "big.bin").write_bytes(data[:1_000_003])
    r = lftp.ok(server, "get -c big.bin")
    assert "REST 1000003" in sent(r.err)
    assert file_sha256(workdir / "big.bin") == sha256(data)


@pytest.mark.parametrize("command", ["put -c big.bin", "reput big.bin"])
def test_put_resume(lftp: Lftp, server: Server, workdir: Path, command: str) -> None:
    data = payload(3 * 1024 * 1024 + 7, seed=6)
    (workdir / "big.bin").write_bytes(data)
    (server.root / "big.bin").write_bytes(data[:2_000_001])
    r = lftp.ok(server, command, user=ALICE)
    commands = sent(r.err)
    assert "SIZE big.bin" in commands
    assert "REST 2000001" in commands or "APPE big.bin" in commands, r.err
    assert file_sha256(server.root / "big.bin") == sha256(data)


# --- data connection modes and addresses ---------------------------------------------

MODES = {
    "pasv": (("set ftp:passive-mode on", "set ftp:prefer-epsv no"), "PASV"),
    "epsv": (("set ftp:passive-mode on", "set ftp:prefer-epsv yes"), "EPSV"),
    "active": (("set ftp:passive-mode off",), "PORT"),
}


@pytest.mark.parametrize("mode", MODES.values(), ids=MODES.keys())
def test_data_connection_modes(
    lftp: Lftp, server: Server, workdir: Path, mode: tuple[tuple[str, ...], str]
) -> None:
    settings, verb = mode
    data = payload(2 * 1024 * 1024 + 9, seed=7)
    (server.root / "down.bin").write_bytes(data)
    (workdir / "up.bin").write_bytes(data[::-1])
    r = lftp.ok(
        server,
        "get down.bin -o down.bin",
        "put up.bin -o up.bin",
        "ls",
        settings=settings,
        user=ALICE,
    )
    used = verbs(r.err)
    assert used.count(verb) >= 3, r.err
    others = {"PASV", "EPSV", "PORT", "EPRT"} - {verb}
    assert not others & set(used), r.err
    assert file_sha256(workdir / "down.bin") == sha256(data)
    assert file_sha256(server.root / "up.bin") == sha256(data[::-1])
    assert parse_ls_lines(r.out)["up.bin"].size == len(data)


def _ipv6_transfers(lftp: Lftp, srv: Server, workdir: Path, settings: tuple[str, ...]) -> str:
    data = payload(1024 * 1024 + 3, seed=8)
    (srv.root / "down.bin").write_bytes(data)
    (workdir / "up.bin").write_bytes(data[::-1])
    r = lftp.ok(
        srv,
        "get down.bin -o down.bin",
        "put up.bin -o up.bin",
        "cls -l",
        settings=settings,
        user=ALICE,
    )
    assert "Connecting to ::1 (::1)" in r.err
    assert "PASV" not in verbs(r.err) and "PORT" not in verbs(r.err)
    assert file_sha256(workdir / "down.bin") == sha256(data)
    assert file_sha256(srv.root / "up.bin") == sha256(data[::-1])
    assert {n: s for n, (_, s) in parse_cls_long(r.out).items()} == {
        "down.bin": len(data),
        "up.bin": len(data),
    }
    return r.err


def test_ipv6_passive(lftp: Lftp, ipv6_server: Server, workdir: Path) -> None:
    err = _ipv6_transfers(lftp, ipv6_server, workdir, ("set ftp:passive-mode on",))
    assert verbs(err).count("EPSV") >= 3


def test_ipv6_active(lftp: Lftp, ipv6_server: Server, workdir: Path) -> None:
    """Active mode over IPv6 loopback.

    lftp 4.x leaves its data socket unbound when the server is on loopback and,
    unlike for PORT, does not fill in an address for EPRT: it sends
    ``EPRT |2|::|port|``. A server may refuse that (the address is not the
    client's, RFC 2577) or take it to mean the client's own address. Either
    way lftp must end up with correct transfers: on a refusal it switches to
    passive mode and retries, so retries (without delay) are allowed here.
    """
    settings = (
        "set ftp:passive-mode off",
        "set net:max-retries 4",
        "set net:reconnect-interval-base 0",
        "set net:reconnect-interval-max 0",
    )
    err = _ipv6_transfers(lftp, ipv6_server, workdir, settings)
    eprts = [cmd for cmd in sent(err) if cmd.startswith("EPRT ")]
    assert eprts, err
    assert all(cmd.startswith("EPRT |2|") for cmd in eprts), eprts
    replies = received(err)
    if any(line.startswith("501 ") for line in replies):
        assert "EPSV" in verbs(err), err


@pytest.mark.parametrize("mode", MODES.values(), ids=MODES.keys())
def test_dual_stack_server_with_ipv4_client(
    lftp: Lftp, dual_stack_server: Server, workdir: Path, mode: tuple[tuple[str, ...], str]
) -> None:
    srv = dual_stack_server
    settings, verb = mode
    data = payload(500_000, seed=10)
    (srv.root / "f.bin").write_bytes(data)
    v4 = Server(srv.thread, srv.root, "127.0.0.1", srv.port)
    r = lftp.ok(v4, "get f.bin -o f.bin", settings=settings)
    assert verb in verbs(r.err), r.err
    assert file_sha256(workdir / "f.bin") == sha256(data)


# --- names ----------------------------------------------------------------------------


def test_utf8_names(lftp: Lftp, server: Server, workdir: Path) -> None:
    data = payload(30_000, seed=11)
    (workdir / CHINESE).write_bytes(data)
    r = lftp.ok(
        server,
        f"mkdir {q(CHINESE_DIR)}",
        f"put {q(CHINESE)} -o {q(CHINESE_DIR + '/' + CHINESE)}",
        f"mv {q(CHINESE_DIR + '/' + CHINESE)} {q(CHINESE_DIR + '/改名.txt')}",
        f"get {q(CHINESE_DIR + '/改名.txt')} -o back.txt",
        f"cd {q(CHINESE_DIR)}",
        "cls -l",
        user=ALICE,
    )
    assert "OPTS UTF8 ON" in sent(r.err)
    assert (server.root / CHINESE_DIR).is_dir()
    assert file_sha256(server.root / CHINESE_DIR / "改名.txt") == sha256(data)
    assert file_sha256(workdir / "back.txt") == sha256(data)
    assert {n: s for n, (_, s) in parse_cls_long(r.out).items()} == {"改名.txt": len(data)}
    # Mirror a tree with non-ASCII names both ways.
    tree = make_tree(workdir / "树", files=10, seed=12)
    lftp.ok(server, f"mirror -R {q('树')} {q('远程树')}", user=ALICE)
    assert tree_digests(server.root / "远程树") == tree
    lftp.ok(server, f"mirror {q('远程树')} {q('回来')}")
    assert tree_digests(workdir / "回来") == tree


# --- login and raw commands -----------------------------------------------------------


def test_login_with_password(lftp: Lftp, server: Server) -> None:
    (server.root / "f.txt").write_bytes(b"x")
    r = lftp.ok(server, "cls -1", user=ALICE)
    assert r.out.split() == ["f.txt"]
    assert f"USER {USER}" in sent(r.err)


@pytest.mark.parametrize("creds", [(USER, "wrong"), ("nobody", "secret")])
def test_login_denied(lftp: Lftp, server: Server, creds: tuple[str, str]) -> None:
    r = lftp(server, "cls -1", user=creds)
    assert r.returncode != 0, r.log
    assert "530" in r.err


def test_quote_raw_commands(lftp: Lftp, server: Server) -> None:
    r = lftp.ok(
        server,
        "quote SYST",
        "quote FEAT",
        "quote SITE HELP",
        "quote HELP",
        "quote NOOP",
        "quote PWD",
        "quote MODE S",
        "quote STRU F",
        "quote OPTS UTF8 ON",
        "quote HELP RETR",
        "quote STAT",
        "quote ABOR",
        "quote XYZZY",
        debug=False,
    )
    out = r.out.splitlines()
    assert "215 UNIX Type: L8" in out
    # FEAT: a 211 multi-line reply listing what lftp relies on.
    start = out.index("211-Features:")
    end = next(i for i in range(start + 1, len(out)) if out[i].startswith("211 "))
    features = {line.strip() for line in out[start + 1 : end]}
    assert {"EPSV", "EPRT", "SIZE", "MDTM", "REST STREAM", "UTF8"} <= features
    assert any(f.startswith("MLST ") and "type*" in f and "size*" in f for f in features)
    assert any(line.startswith("214") and "SITE" in line for line in out)
    assert "214 Help OK." in out
    assert any(line.startswith("200") for line in out)  # NOOP
    assert '257 "/" is the current directory.' in out
    assert "200 Mode set to S." in out
    assert "200 Structure set to F." in out
    assert any(line.startswith("500") or line.startswith("502") for line in out)
    assert any(line.startswith("214") and "RETR" in line for line in out)
    assert any(line.startswith("211-") for line in out)  # STAT
    assert any(line.startswith(("225 ", "226 ")) for line in out)  # ABOR, nothing running


def test_quote_size_mdtm_stat(lftp: Lftp, server: Server) -> None:
    f = server.root / "f.bin"
    f.write_bytes(payload(1234))
    os.utime(f, (1_600_000_000, 1_600_000_000))
    r = lftp.ok(
        server,
        "quote SIZE f.bin",
        "quote MDTM f.bin",
        "quote STAT f.bin",
        "quote MLST f.bin",
        debug=False,
    )
    out = r.out.splitlines()
    assert "213 1234" in out
    mlst = [line for line in out if "type=file" in line]
    assert len(mlst) == 1 and mlst[0].endswith(" /f.bin"), out
    facts = dict(f.split("=", 1) for f in mlst[0].strip().split(" ", 1)[0].rstrip(";").split(";"))
    assert facts["size"] == "1234" and facts["modify"] == "20200913122640"
    assert "213 20200913122640" in out
    stat_lines = [line for line in out if line.startswith(("213-", " ", "-rw"))]
    assert any("f.bin" in line and "1234" in line for line in stat_lines), r.out


# --- more file management ---------------------------------------------------------


def test_mirror_odd_names_both_ways(lftp: Lftp, server: Server, workdir: Path) -> None:
    src = workdir / "src"
    src.mkdir()
    for i, name in enumerate(ODD_NAMES):
        (src / name).write_bytes(payload(100 + i, seed=i))
    (src / " dir with spaces ").mkdir()
    (src / " dir with spaces " / "inner #1.txt").write_bytes(b"inner")
    expected = tree_digests(src)
    lftp.ok(server, "mirror -R src remote", user=ALICE)
    assert tree_digests(server.root / "remote") == expected
    lftp.ok(server, "mirror remote back")
    assert tree_digests(workdir / "back") == expected


def test_mirror_delete(lftp: Lftp, server: Server, workdir: Path) -> None:
    expected = make_tree(workdir / "src", files=12, seed=13)
    remote = server.root / "remote"
    (remote / "stale-dir" / "deeper").mkdir(parents=True)
    (remote / "stale-dir" / "deeper" / "old.bin").write_bytes(b"old")
    (remote / "stale.bin").write_bytes(b"stale")
    r = lftp.ok(server, "mirror -R --delete src remote", user=ALICE)
    assert tree_digests(remote) == expected
    assert not (remote / "stale-dir").exists()
    assert {"DELE", "RMD"} <= set(verbs(r.err))
    # And the other way: local extras are removed, remote is untouched.
    (workdir / "local").mkdir()
    (workdir / "local" / "extra.txt").write_bytes(b"extra")
    lftp.ok(server, "mirror --delete remote local")
    assert tree_digests(workdir / "local") == expected


def test_mget_mput_mrm_globs(lftp: Lftp, server: Server, workdir: Path) -> None:
    for i in range(5):
        (server.root / f"r{i}.log").write_bytes(payload(1000 + i, seed=i))
        (workdir / f"l{i}.log").write_bytes(payload(2000 + i, seed=i))
    (server.root / "other.txt").write_bytes(b"not matched")
    (workdir / "got").mkdir()
    r = lftp.ok(server, "mget -O got r*.log", "mput l*.log", "mrm r*.log", user=ALICE)
    got = sorted(p.name for p in (workdir / "got").iterdir())
    assert got == [f"r{i}.log" for i in range(5)]
    for i in range(5):
        assert (workdir / "got" / f"r{i}.log").read_bytes() == payload(1000 + i, seed=i)
        assert (server.root / f"l{i}.log").read_bytes() == payload(2000 + i, seed=i)
    assert sorted(p.name for p in server.root.iterdir()) == sorted(
        [f"l{i}.log" for i in range(5)] + ["other.txt"]
    )
    assert verbs(r.err).count("DELE") == 5


def test_mkdir_existing_fails(lftp: Lftp, server: Server) -> None:
    (server.root / "exists").mkdir()
    r = lftp(server, "mkdir exists", user=ALICE)
    assert r.returncode != 0, r.log
    assert any(line.startswith(("550", "521", "553")) for line in received(r.err)), r.log


def test_ls_with_flags(lftp: Lftp, server: Server) -> None:
    expected = _listing_fixture(server.root)
    r = lftp.ok(server, "cd dir", "ls -la")
    entries = parse_ls_lines(r.out)
    # Some servers list "." and ".." for -a; nothing else may differ.
    assert set(entries) - {".", ".."} == set(expected)


def test_paths_cannot_leave_the_root(lftp: Lftp, server: Server, tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_bytes(b"top secret")
    (server.root / "sub").mkdir()
    for path in ("../secret.txt", "/../secret.txt", "sub/../../secret.txt"):
        r = lftp(server, f"get {q(path)} -o out.txt", debug=False)
        assert r.returncode != 0, r.log
    r = lftp.ok(server, "cd ..", "cd ../..", "pwd", "cls -1", debug=False)
    lines = r.out.splitlines()
    assert lines[0].endswith("/") and "secret" not in r.out
    assert lines[1:] == ["sub/"]


def test_stock_tls_setting_works_with_plain_server(lftp: Lftp, server: Server) -> None:
    """Stock lftp (ftp:ssl-allow yes) uses TLS only if FEAT offers it; plain FTP must work."""
    (server.root / "f.txt").write_bytes(b"plain\n")
    r = lftp.ok(server, "cat f.txt", settings=("set ftp:ssl-allow yes",))
    assert r.stdout == b"plain\n"
    features = [line.strip() for line in received(r.err)]
    if "AUTH TLS" not in features:
        assert not any(cmd.startswith("AUTH") for cmd in sent(r.err))


# --- protocol features lftp can be told to use ---------------------------------------


def test_pipelined_commands(lftp: Lftp, server: Server, workdir: Path) -> None:
    """With ftp:sync-mode off lftp sends several commands without waiting for replies."""
    expected = make_tree(server.root / "tree", files=20, seed=14)
    up = make_tree(workdir / "up", files=10, seed=15)
    r = lftp.ok(
        server,
        "mirror tree down",
        "mirror -R up remote-up",
        "cls -1 tree/a",
        settings=("set ftp:sync-mode off",),
        user=ALICE,
    )
    assert tree_digests(workdir / "down") == expected
    assert tree_digests(server.root / "remote-up") == up
    assert sorted(r.out.splitlines()) == sorted(
        f"tree/a/{p.name}" + ("/" if p.is_dir() else "") for p in (server.root / "tree/a").iterdir()
    )


def test_stat_for_list(lftp: Lftp, server: Server) -> None:
    """``ftp:use-stat-for-list`` lists over the control connection with ``STAT path``."""
    expected = _listing_fixture(server.root)
    r = lftp.ok(server, "ls dir", settings=("set ftp:use-stat-for-list yes",))
    assert any(cmd.startswith("STAT") for cmd in sent(r.err)), r.err
    assert "LIST" not in verbs(r.err)
    entries = parse_ls_lines(r.out)
    assert set(entries) == set(expected)
    for name, (size, is_dir) in expected.items():
        if not is_dir:
            assert entries[name].size == size


def test_allo_before_store(lftp: Lftp, server: Server, workdir: Path) -> None:
    data = payload(50_000, seed=16)
    (workdir / "f.bin").write_bytes(data)
    r = lftp.ok(server, "put f.bin", settings=("set ftp:use-allo yes",), user=ALICE)
    assert "ALLO 50000" in sent(r.err)
    assert file_sha256(server.root / "f.bin") == sha256(data)


def test_mirror_preserves_times(lftp: Lftp, server: Server, workdir: Path) -> None:
    src = workdir / "src"
    src.mkdir()
    times = {}
    for i in range(5):
        f = src / f"f{i}.bin"
        f.write_bytes(payload(100 * i, seed=i))
        stamp = 1_500_000_000 + i * 86_400 * 40  # spread over months and years
        os.utime(f, (stamp, stamp))
        times[f.name] = stamp
    r = lftp.ok(server, "mirror -R src remote", user=ALICE)
    assert any(cmd.startswith(("MFMT", "MDTM", "SITE UTIME")) for cmd in sent(r.err))
    for name, stamp in times.items():
        assert int((server.root / "remote" / name).stat().st_mtime) == stamp, name
    lftp.ok(server, "mirror remote back")
    for name, stamp in times.items():
        assert int((workdir / "back" / name).stat().st_mtime) == stamp, name


def test_resume_beyond_4gib(lftp: Lftp, server: Server, workdir: Path) -> None:
    """``get -c`` of a sparse 5 GiB file whose local copy lacks only the last bytes."""
    tail = payload(8192, seed=19)
    make_sparse(server.root / "huge.bin", HUGE_SIZE, tail)
    have = HUGE_SIZE - len(tail)
    with open(workdir / "huge.bin", "wb") as fh:
        fh.truncate(have)
    r = lftp.ok(server, "cls -l huge.bin", "get -c huge.bin")
    assert f"REST {have}" in sent(r.err)
    assert parse_cls_long(r.out)["huge.bin"][1] == HUGE_SIZE
    assert (workdir / "huge.bin").stat().st_size == HUGE_SIZE
    with open(workdir / "huge.bin", "rb") as fh:
        fh.seek(have)
        assert fh.read() == tail
