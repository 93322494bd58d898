"""Interoperability with curl (libcurl's FTP client) as a subprocess.

Every transfer is checked by sha256 of the bytes on the other side; listings
are parsed, not just grepped. curl runs with ``--verbose`` so that the
protocol exchange (``> EPSV``, ``< 229 ...``) can be asserted on as well.
Exit codes are curl's documented ones (``man curl``, EXIT CODES).
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
    Curl,
    Server,
    ServerFactory,
    file_sha256,
    make_sparse,
    parse_ls_lines,
    payload,
    sha256,
)

# curl exit codes (man curl, "EXIT CODES")
CURLE_REMOTE_ACCESS_DENIED = 9
CURLE_UPLOAD_FAILED = 25
CURLE_LOGIN_DENIED = 67
CURLE_REMOTE_FILE_NOT_FOUND = 78

AUTH = ("-u", f"{USER}:{PASSWORD}")

CHINESE = "中文文件名.txt"
CHINESE_DIR = "目录"


def sent_commands(log: str) -> list[str]:
    """The FTP commands curl sent, from its ``--verbose`` log (``> CMD args``)."""
    return [line[2:].rstrip("\r") for line in log.split("\n") if line.startswith("> ")]


def verbs(log: str) -> list[str]:
    return [cmd.split(" ", 1)[0].upper() for cmd in sent_commands(log)]


def replies(log: str) -> list[str]:
    return [line[2:].rstrip("\r") for line in log.split("\n") if line.startswith("< ")]


# --- downloads and uploads ------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_download(curl: Curl, server: Server, workdir: Path, size: int) -> None:
    data = payload(size)
    (server.root / "file.bin").write_bytes(data)
    r = curl.ok("-o", "out.bin", server.url("/file.bin"))
    assert file_sha256(workdir / "out.bin") == sha256(data)
    # curl's default is extended passive mode, binary type.
    assert "EPSV" in verbs(r.err)
    assert "TYPE I" in sent_commands(r.err)


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_upload(curl: Curl, server: Server, workdir: Path, size: int) -> None:
    data = payload(size, seed=7)
    (workdir / "up.bin").write_bytes(data)
    r = curl.ok(*AUTH, "-T", "up.bin", server.url("/uploaded.bin"))
    assert "STOR uploaded.bin" in sent_commands(r.err)
    target = server.root / "uploaded.bin"
    assert target.stat().st_size == size
    assert file_sha256(target) == sha256(data)
    # Nothing else (no temporary file) is left in the served directory.
    assert sorted(p.name for p in server.root.iterdir()) == ["uploaded.bin"]


def test_upload_from_stdin(curl: Curl, server: Server) -> None:
    """``-T -``: the size is not known in advance; the server reads to end of stream."""
    data = payload(3 * 1024 * 1024 + 11, seed=17)
    r = curl(*AUTH, "-T", "-", server.url("/stdin.bin"), input_bytes=data)
    assert r.returncode == 0, r.log
    assert file_sha256(server.root / "stdin.bin") == sha256(data)


def test_upload_replaces_longer_file(curl: Curl, server: Server, workdir: Path) -> None:
    (server.root / "f.bin").write_bytes(payload(1024 * 1024))
    data = b"short content\n"
    (workdir / "f.bin").write_bytes(data)
    curl.ok(*AUTH, "-T", "f.bin", server.url("/f.bin"))
    assert (server.root / "f.bin").read_bytes() == data


def test_upload_append(curl: Curl, server: Server, workdir: Path) -> None:
    head, tail = payload(5000, seed=1), payload(7000, seed=2)
    (server.root / "log.bin").write_bytes(head)
    (workdir / "tail.bin").write_bytes(tail)
    r = curl.ok(*AUTH, "--append", "-T", "tail.bin", server.url("/log.bin"))
    assert "APPE log.bin" in sent_commands(r.err)
    assert file_sha256(server.root / "log.bin") == sha256(head + tail)


def test_several_files_on_one_connection(curl: Curl, server: Server, workdir: Path) -> None:
    files = {f"f{i}.bin": payload(10_000 + i, seed=i) for i in range(4)}
    for name, data in files.items():
        (server.root / name).write_bytes(data)
    args: list[str] = []
    for name in files:
        args += ["-o", name, server.url(f"/{name}")]
    r = curl.ok(*args)
    for name, data in files.items():
        assert file_sha256(workdir / name) == sha256(data)
    # One login: curl reused the control connection for every file.
    assert verbs(r.err).count("USER") == 1
    assert verbs(r.err).count("RETR") == len(files)


def test_anonymous_upload_refused_on_read_only_server(
    curl: Curl, start_server: ServerFactory, workdir: Path
) -> None:
    srv: Server = start_server(write=False)
    (workdir / "x.bin").write_bytes(b"data")
    r = curl("-T", "x.bin", srv.url("/x.bin"))
    assert r.returncode == CURLE_UPLOAD_FAILED, r.log
    assert any(line.startswith("550") or line.startswith("553") for line in replies(r.err)), r.log
    assert not (srv.root / "x.bin").exists()


# --- listings -------------------------------------------------------------------------


def _populate_listing_dir(root: Path) -> dict[str, tuple[int, bool]]:
    d = root / "dir"
    (d / "sub").mkdir(parents=True)
    expected = {"sub": (0, True)}
    for name, size in [
        ("a.txt", 0),
        ("b.bin", 1),
        ("c.dat", 65536),
        ("with space.txt", 123),
        (CHINESE, 77),
    ]:
        (d / name).write_bytes(payload(size))
        expected[name] = (size, False)
    return expected


def test_list_directory(curl: Curl, server: Server) -> None:
    expected = _populate_listing_dir(server.root)
    r = curl.ok(server.url("/dir/"))
    assert "LIST" in verbs(r.err)
    entries = parse_ls_lines(r.out)
    assert set(entries) == set(expected)
    for name, (size, is_dir) in expected.items():
        assert entries[name].is_dir == is_dir, name
        if not is_dir:
            assert entries[name].size == size, name


def test_list_only_gives_names(curl: Curl, server: Server) -> None:
    expected = _populate_listing_dir(server.root)
    r = curl.ok("--list-only", server.url("/dir/"))
    assert "NLST" in verbs(r.err)
    names = [line.rstrip("\r") for line in r.out.splitlines() if line.strip()]
    assert sorted(names) == sorted(expected)


def test_mlsd_via_custom_request(curl: Curl, server: Server) -> None:
    expected = _populate_listing_dir(server.root)
    r = curl.ok("-X", "MLSD", server.url("/dir/"))
    seen: dict[str, dict[str, str]] = {}
    for line in r.out.splitlines():
        facts_text, _, name = line.rstrip("\r").partition(" ")
        facts = dict(f.split("=", 1) for f in facts_text.rstrip(";").split(";"))
        seen[name] = {k.lower(): v for k, v in facts.items()}
    assert set(seen) == set(expected)
    for name, (size, is_dir) in expected.items():
        assert seen[name]["type"] == ("dir" if is_dir else "file"), name
        if not is_dir:
            assert int(seen[name]["size"]) == size, name


def test_list_root_of_empty_server(curl: Curl, server: Server) -> None:
    r = curl.ok(server.url("/"))
    assert r.stdout == b""


# --- resume ---------------------------------------------------------------------------


def test_resume_download(curl: Curl, server: Server, workdir: Path) -> None:
    data = payload(3 * 1024 * 1024 + 17, seed=3)
    (server.root / "big.bin").write_bytes(data)
    have = 1_234_567
    (workdir / "big.bin").write_bytes(data[:have])
    r = curl.ok("-C", "-", "-o", "big.bin", server.url("/big.bin"))
    assert f"REST {have}" in sent_commands(r.err)
    assert file_sha256(workdir / "big.bin") == sha256(data)


def test_resume_upload(curl: Curl, server: Server, workdir: Path) -> None:
    data = payload(3 * 1024 * 1024 + 5, seed=4)
    (workdir / "big.bin").write_bytes(data)
    have = 999_999
    (server.root / "big.bin").write_bytes(data[:have])
    r = curl.ok(*AUTH, "-C", "-", "-T", "big.bin", server.url("/big.bin"))
    assert "SIZE big.bin" in sent_commands(r.err)
    assert "213 999999" in replies(r.err)
    assert file_sha256(server.root / "big.bin") == sha256(data)


def test_byte_range_download(curl: Curl, server: Server, workdir: Path) -> None:
    """``-r`` uses REST, then drops the data connection early (and sends ABOR)."""
    data = payload(4 * 1024 * 1024, seed=5)
    (server.root / "big.bin").write_bytes(data)
    r = curl.ok("-r", "1000-1999", "-o", "part.bin", server.url("/big.bin"))
    assert "REST 1000" in sent_commands(r.err)
    assert (workdir / "part.bin").read_bytes() == data[1000:2000]


def test_head_reports_size_and_time(curl: Curl, server: Server) -> None:
    f = server.root / "f.bin"
    f.write_bytes(payload(4321))
    os.utime(f, (1_600_000_000, 1_600_000_000))  # 2020-09-13 12:26:40 UTC
    r = curl.ok("-I", server.url("/f.bin"))
    assert "Content-Length: 4321" in r.out
    assert "Last-Modified: Sun, 13 Sep 2020 12:26:40 GMT" in r.out


def test_remote_time_applied_locally(curl: Curl, server: Server, workdir: Path) -> None:
    f = server.root / "f.bin"
    f.write_bytes(payload(10))
    os.utime(f, (1_500_000_000, 1_500_000_000))
    r = curl.ok("-R", "-o", "f.bin", server.url("/f.bin"))
    assert "MDTM" in verbs(r.err)
    assert int((workdir / "f.bin").stat().st_mtime) == 1_500_000_000


# --- data connection modes ----------------------------------------------------------

MODES = {
    "epsv": ([], "EPSV"),
    "pasv": (["--disable-epsv"], "PASV"),
    "eprt": (["--ftp-port", "127.0.0.1"], "EPRT"),
    "port": (["-P", "127.0.0.1", "--disable-eprt"], "PORT"),
}


@pytest.mark.parametrize("mode", MODES.values(), ids=MODES.keys())
def test_data_connection_modes(
    curl: Curl, server: Server, workdir: Path, mode: tuple[list[str], str]
) -> None:
    flags, verb = mode
    data = payload(2 * 1024 * 1024 + 3, seed=6)
    (server.root / "down.bin").write_bytes(data)
    (server.root / "dir").mkdir()
    (workdir / "up.bin").write_bytes(data[::-1])

    r = curl.ok(*flags, "-o", "down.bin", server.url("/down.bin"))
    assert verb in verbs(r.err), r.log
    assert file_sha256(workdir / "down.bin") == sha256(data)

    r = curl.ok(*flags, *AUTH, "-T", "up.bin", server.url("/dir/up.bin"))
    assert verb in verbs(r.err), r.log
    assert file_sha256(server.root / "dir" / "up.bin") == sha256(data[::-1])

    r = curl.ok(*flags, server.url("/dir/"))
    assert verb in verbs(r.err), r.log
    assert parse_ls_lines(r.out)["up.bin"].size == len(data)


def test_ipv6(curl: Curl, ipv6_server: Server, workdir: Path) -> None:
    srv = ipv6_server
    assert srv.url().startswith("ftp://[::1]:")
    data = payload(1024 * 1024 + 1, seed=8)
    (srv.root / "f.bin").write_bytes(data)
    (workdir / "up.bin").write_bytes(data[::-1])

    r = curl.ok("-o", "f.bin", srv.url("/f.bin"))
    assert "EPSV" in verbs(r.err)
    assert file_sha256(workdir / "f.bin") == sha256(data)

    r = curl.ok(*AUTH, "-T", "up.bin", srv.url("/up.bin"))
    assert file_sha256(srv.root / "up.bin") == sha256(data[::-1])

    # Active mode over IPv6 must use EPRT |2|::1|port|.
    r = curl.ok("--ftp-port", "::1", "-o", "active.bin", srv.url("/f.bin"))
    assert any(cmd.startswith("EPRT |2|::1|") for cmd in sent_commands(r.err)), r.log
    assert file_sha256(workdir / "active.bin") == sha256(data)

    entries = parse_ls_lines(curl.ok(srv.url("/")).out)
    assert {name: e.size for name, e in entries.items()} == {
        "f.bin": len(data),
        "up.bin": len(data),
    }


@pytest.mark.parametrize("mode", MODES.values(), ids=MODES.keys())
def test_dual_stack_server_with_ipv4_client(
    curl: Curl, dual_stack_server: Server, workdir: Path, mode: tuple[list[str], str]
) -> None:
    """A server bound to ``::`` serves IPv4 clients (seen as ::ffff:127.0.0.1) in every mode."""
    srv = dual_stack_server
    flags, verb = mode
    data = payload(300_000, seed=9)
    (srv.root / "f.bin").write_bytes(data)
    url = f"ftp://127.0.0.1:{srv.port}/f.bin"
    r = curl.ok(*flags, "-o", "f.bin", url)
    assert verb in verbs(r.err), r.log
    if verb == "PASV":
        # The 227 reply must carry a plain IPv4 address, not a mapped one.
        assert any(re.match(r"227 .*\(127,0,0,1,\d+,\d+\)", line) for line in replies(r.err))
    assert file_sha256(workdir / "f.bin") == sha256(data)


# --- names ----------------------------------------------------------------------------


def test_utf8_names(curl: Curl, server: Server, workdir: Path) -> None:
    data = payload(20_000, seed=10)
    (server.root / CHINESE_DIR).mkdir()
    (server.root / CHINESE_DIR / CHINESE).write_bytes(data)

    r = curl.ok("-o", "down.txt", server.url(f"/{CHINESE_DIR}/{CHINESE}"))
    assert f"RETR {CHINESE}" in sent_commands(r.err)
    assert file_sha256(workdir / "down.txt") == sha256(data)

    (workdir / "up.txt").write_bytes(data[::-1])
    curl.ok(*AUTH, "-T", "up.txt", server.url(f"/{CHINESE_DIR}/上传.txt"))
    assert file_sha256(server.root / CHINESE_DIR / "上传.txt") == sha256(data[::-1])

    entries = parse_ls_lines(curl.ok(server.url(f"/{CHINESE_DIR}/")).out)
    assert {n: e.size for n, e in entries.items()} == {CHINESE: len(data), "上传.txt": len(data)}
    names = curl.ok("--list-only", server.url(f"/{CHINESE_DIR}/")).out.split()
    assert sorted(names) == sorted([CHINESE, "上传.txt"])


def test_nested_paths_with_every_ftp_method(curl: Curl, server: Server, workdir: Path) -> None:
    data = payload(5000, seed=11)
    (server.root / "a" / "b").mkdir(parents=True)
    (server.root / "a" / "b" / "f.bin").write_bytes(data)
    for method in ("multicwd", "singlecwd", "nocwd"):
        r = curl.ok("--ftp-method", method, "-o", f"{method}.bin", server.url("/a/b/f.bin"))
        assert file_sha256(workdir / f"{method}.bin") == sha256(data), r.log
    r = curl.ok("--ftp-method", "nocwd", "-o", "x.bin", server.url("/a/b/f.bin"))
    assert "RETR a/b/f.bin" in sent_commands(r.err)


# --- login and errors -----------------------------------------------------------------


def test_login_with_password(curl: Curl, server: Server) -> None:
    (server.root / "f.txt").write_bytes(b"hi\n")
    r = curl.ok(*AUTH, server.url("/"))
    assert "230 Login successful." in replies(r.err)
    assert set(parse_ls_lines(r.out)) == {"f.txt"}
    # Credentials in the URL work too.
    r = curl.ok(server.url("/f.txt", user=f"{USER}:{PASSWORD}"))
    assert r.stdout == b"hi\n"


@pytest.mark.parametrize("creds", [f"{USER}:wrong", "nobody:secret", f"{USER}:"])
def test_login_denied(curl: Curl, server: Server, creds: str) -> None:
    r = curl("-u", creds, server.url("/"))
    assert r.returncode == CURLE_LOGIN_DENIED, r.log
    assert any(line.startswith("530") for line in replies(r.err)), r.log


def test_anonymous_disabled(curl: Curl, start_server: ServerFactory) -> None:
    srv: Server = start_server(anonymous=False)
    r = curl(srv.url("/"))
    assert r.returncode == CURLE_LOGIN_DENIED, r.log
    curl.ok(*AUTH, srv.url("/"))


def test_missing_file(curl: Curl, server: Server, workdir: Path) -> None:
    r = curl("-o", "x", server.url("/no-such-file.bin"))
    assert r.returncode == CURLE_REMOTE_FILE_NOT_FOUND, r.log
    assert any(line.startswith("550") for line in replies(r.err)), r.log


def test_missing_directory(curl: Curl, server: Server) -> None:
    r = curl("-o", "x", server.url("/no-such-dir/file.bin"))
    assert r.returncode == CURLE_REMOTE_ACCESS_DENIED, r.log
    assert "CWD no-such-dir" in sent_commands(r.err)


# --- quote commands and directory creation --------------------------------------------


def test_quote_commands(curl: Curl, server: Server, workdir: Path) -> None:
    (server.root / "sub").mkdir()
    (server.root / "sub" / "victim.txt").write_bytes(b"x")
    (server.root / "sub" / "old.txt").write_bytes(b"rename me")
    (server.root / "sub" / "get.txt").write_bytes(b"content")
    r = curl.ok(
        *AUTH,
        # Before the transfer (relative to the login directory).
        "-Q",
        "MKD made-before",
        # After the transfer (relative to the directory curl changed into).
        "-Q",
        "-DELE victim.txt",
        "-Q",
        "-RNFR old.txt",
        "-Q",
        "-RNTO new.txt",
        "-o",
        "get.txt",
        server.url("/sub/get.txt"),
    )
    assert (workdir / "get.txt").read_bytes() == b"content"
    assert (server.root / "made-before").is_dir()
    assert not (server.root / "sub" / "victim.txt").exists()
    assert not (server.root / "sub" / "old.txt").exists()
    assert (server.root / "sub" / "new.txt").read_bytes() == b"rename me"
    got = replies(r.err)
    assert any(line.startswith("257") for line in got)
    assert "350 Ready for RNTO." in got


def test_quote_command_failure(curl: Curl, server: Server) -> None:
    r = curl(*AUTH, "-Q", "DELE does-not-exist", server.url("/"))
    assert r.returncode == 21, r.log  # CURLE_QUOTE_ERROR
    # A '*' prefix tells curl to ignore the failure.
    curl.ok(*AUTH, "-Q", "*DELE does-not-exist", server.url("/"))


def test_create_dirs_on_upload(curl: Curl, server: Server, workdir: Path) -> None:
    data = payload(12345, seed=12)
    (workdir / "f.bin").write_bytes(data)
    r = curl.ok(*AUTH, "--ftp-create-dirs", "-T", "f.bin", server.url("/x/y/z/f.bin"))
    assert "MKD x" in sent_commands(r.err)
    assert file_sha256(server.root / "x" / "y" / "z" / "f.bin") == sha256(data)
    # Again, now that the directories exist: no MKD needed.
    r = curl.ok(*AUTH, "--ftp-create-dirs", "-T", "f.bin", server.url("/x/y/z/g.bin"))
    assert "MKD" not in verbs(r.err)
    assert file_sha256(server.root / "x" / "y" / "z" / "g.bin") == sha256(data)
    # Without the flag a missing directory is an error.
    r = curl(*AUTH, "-T", "f.bin", server.url("/nope/f.bin"))
    assert r.returncode == CURLE_REMOTE_ACCESS_DENIED, r.log
    assert not (server.root / "nope").exists()


# --- ASCII mode -----------------------------------------------------------------------

TEXT_LF = b"line one\nline two\n\nlast line without newline"
TEXT_CRLF = TEXT_LF.replace(b"\n", b"\r\n")


def wire_bytes(trace: str, block: str) -> bytes:
    """Bytes of every ``block`` ("<= Recv data", "=> Send header"...) in a ``curl --trace``."""
    out = bytearray()
    in_block = False
    for line in trace.splitlines():
        if line.startswith(("<= ", "=> ", "== ")):
            in_block = line.startswith(block + ",")
            continue
        if in_block:
            m = re.match(r"^[0-9a-f]{4}: ((?:[0-9a-f]{2} ?)+)", line)
            if m:
                out += bytes.fromhex(m.group(1).replace(" ", ""))
    return bytes(out)


@pytest.mark.parametrize("how", ["--use-ascii", ";type=A"])
def test_ascii_download_sends_crlf(curl: Curl, server: Server, workdir: Path, how: str) -> None:
    (server.root / "text.txt").write_bytes(TEXT_LF)
    flags, suffix = (["--use-ascii"], "") if how == "--use-ascii" else ([], ";type=A")
    r = curl.ok(*flags, "--trace", "trace.txt", "-o", "text.txt", server.url("/text.txt") + suffix)
    trace = (workdir / "trace.txt").read_text("utf-8", "replace")
    assert b"TYPE A\r\n" in wire_bytes(trace, "=> Send header")
    # On the wire: CRLF line ends (server converted); on disk curl converts back to LF.
    assert wire_bytes(trace, "<= Recv data") == TEXT_CRLF
    assert (workdir / "text.txt").read_bytes() == TEXT_LF
    assert r.returncode == 0


def test_ascii_upload_stores_lf(curl: Curl, server: Server, workdir: Path) -> None:
    (workdir / "text.txt").write_bytes(TEXT_LF)
    curl.ok(*AUTH, "--use-ascii", "--trace", "trace.txt", "-T", "text.txt", server.url("/t.txt"))
    trace = (workdir / "trace.txt").read_text("utf-8", "replace")
    assert b"TYPE A\r\n" in wire_bytes(trace, "=> Send header")
    # curl sends CRLF; the server stores the host's LF form.
    assert wire_bytes(trace, "=> Send data") == TEXT_CRLF
    assert (server.root / "t.txt").read_bytes() == TEXT_LF


def test_binary_keeps_crlf(curl: Curl, server: Server, workdir: Path) -> None:
    (server.root / "crlf.txt").write_bytes(TEXT_CRLF)
    curl.ok("-o", "crlf.txt", server.url("/crlf.txt"))
    assert (workdir / "crlf.txt").read_bytes() == TEXT_CRLF
    (workdir / "up.txt").write_bytes(TEXT_CRLF)
    curl.ok(*AUTH, "-T", "up.txt", server.url("/up.txt"))
    assert (server.root / "up.txt").read_bytes() == TEXT_CRLF


# --- odd names, many files, concurrency, jail -----------------------------------------


@pytest.mark.parametrize("name", ODD_NAMES, ids=range(len(ODD_NAMES)))
def test_odd_names(curl: Curl, server: Server, workdir: Path, name: str) -> None:
    data = payload(3000, seed=len(name))
    (server.root / "d").mkdir()
    (server.root / "d" / name).write_bytes(data)
    r = curl.ok("-o", "down.bin", server.url(f"/d/{name}"))
    assert f"RETR {name}" in sent_commands(r.err)
    assert file_sha256(workdir / "down.bin") == sha256(data)
    (workdir / "up.bin").write_bytes(data[::-1])
    curl.ok(*AUTH, "-T", "up.bin", server.url(f"/d/up {name}"))
    assert file_sha256(server.root / "d" / f"up {name}") == sha256(data[::-1])
    names = [
        line.rstrip("\r") for line in curl.ok("--list-only", server.url("/d/")).out.split("\n")
    ]
    assert sorted(n for n in names if n) == sorted([name, f"up {name}"])


def test_large_directory_listing(curl: Curl, server: Server) -> None:
    d = server.root / "many"
    d.mkdir()
    expected = {f"file-{i:05d}.dat": i % 997 for i in range(3000)}
    for name, size in expected.items():
        (d / name).write_bytes(b"z" * size)
    names = curl.ok("--list-only", server.url("/many/")).out.split()
    assert sorted(names) == sorted(expected)
    entries = parse_ls_lines(curl.ok(server.url("/many/")).out)
    assert {n: e.size for n, e in entries.items()} == expected


def test_upload_onto_directory_fails(curl: Curl, server: Server, workdir: Path) -> None:
    (server.root / "adir").mkdir()
    (server.root / "adir" / "keep.txt").write_bytes(b"keep")
    (workdir / "f.bin").write_bytes(b"data")
    r = curl(*AUTH, "-T", "f.bin", server.url("/adir"))
    assert r.returncode == CURLE_UPLOAD_FAILED, r.log
    assert (server.root / "adir" / "keep.txt").read_bytes() == b"keep"


def test_concurrent_clients(curl: Curl, server: Server, workdir: Path) -> None:
    """Several curl processes at once, downloads and uploads mixed."""
    downloads = {f"d{i}.bin": payload(1024 * 1024 + i, seed=100 + i) for i in range(6)}
    uploads = {f"u{i}.bin": payload(1024 * 1024 + i, seed=200 + i) for i in range(6)}
    for name, data in downloads.items():
        (server.root / name).write_bytes(data)
    for name, data in uploads.items():
        (workdir / name).write_bytes(data)
    procs = [curl.start("-o", f"got-{n}", server.url(f"/{n}")) for n in downloads]
    procs += [curl.start(*AUTH, "-T", n, server.url(f"/{n}")) for n in uploads]
    results = [curl.finish(p) for p in procs]  # wait for all before asserting
    for r in results:
        assert r.returncode == 0, r.log
    for name, data in downloads.items():
        assert file_sha256(workdir / f"got-{name}") == sha256(data)
    for name, data in uploads.items():
        assert file_sha256(server.root / name) == sha256(data)


def test_paths_cannot_leave_the_root(curl: Curl, server: Server, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"top secret")
    (server.root / "sub").mkdir()
    for url in (
        server.url("/../secret.txt"),
        server.url("/sub/../../secret.txt"),
        server.url("/%2E%2E/secret.txt"),
    ):
        r = curl("--path-as-is", url)
        assert b"top secret" not in r.stdout, url
        assert r.returncode != 0, r.log
    # ".." at the root stays at the root: listing it shows the root.
    r = curl.ok("--path-as-is", server.url("/../"))
    assert set(parse_ls_lines(r.out)) == {"sub"}


def test_symlink_out_of_root_not_followed(curl: Curl, server: Server, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"top secret")
    (server.root / "escape").symlink_to(outside, target_is_directory=True)
    (server.root / "escape-file").symlink_to(outside / "secret.txt")
    for path in ("/escape/secret.txt", "/escape-file"):
        r = curl(server.url(path))
        assert b"top secret" not in r.stdout, path
        assert r.returncode != 0, r.log


# --- TLS negotiation against a plain-FTP server ---------------------------------------


def test_tls_required_is_refused_cleanly(curl: Curl, server: Server) -> None:
    r = curl("--ssl-reqd", server.url("/"))
    assert r.returncode == 64, r.log  # CURLE_USE_SSL_FAILED
    assert "AUTH" in verbs(r.err)


def test_tls_optional_falls_back_to_plain(curl: Curl, server: Server) -> None:
    (server.root / "f.txt").write_bytes(b"plain\n")
    r = curl.ok("--ssl", server.url("/f.txt"))
    assert "AUTH" in verbs(r.err)
    assert r.stdout == b"plain\n"


def test_offsets_beyond_4gib(curl: Curl, server: Server, workdir: Path) -> None:
    """A sparse 5 GiB file: SIZE, LIST and REST must all use 64-bit values."""
    tail = payload(4096, seed=18)
    make_sparse(server.root / "huge.bin", HUGE_SIZE, tail)
    r = curl.ok("-I", server.url("/huge.bin"))
    assert f"Content-Length: {HUGE_SIZE}" in r.out
    assert parse_ls_lines(curl.ok(server.url("/")).out)["huge.bin"].size == HUGE_SIZE
    start = HUGE_SIZE - len(tail)
    r = curl.ok("-r", f"{start}-", "-o", "tail.bin", server.url("/huge.bin"))
    assert f"REST {start}" in sent_commands(r.err)
    assert (workdir / "tail.bin").read_bytes() == tail
