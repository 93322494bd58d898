"""The client commands against a real fileferry server: outputs, files, exit codes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest
from clientkit import Server, run_cli, sha256, tree

from fileferry.cli import main


@pytest.fixture
def out(tmp_path: Path) -> Path:
    d = tmp_path / "out"
    d.mkdir()
    return d


@pytest.fixture
def logged_in(ffserver: Server, monkeypatch: pytest.MonkeyPatch) -> Server:
    monkeypatch.setenv("FILEFERRY_PASSWORD", ffserver.password)
    return ffserver


def test_get_put_ls_mkdir_mv_rm_hash(logged_in: Server, out: Path, capsys):
    srv = logged_in
    (out / "a.txt").write_text("alpha\n")
    (out / "b.bin").write_bytes(os.urandom(70_000))
    assert main(["mkdir", "-q", "--parents", srv.at("docs/deep")]) == 0
    assert main(["put", "-q", str(out / "a.txt"), str(out / "b.bin"), srv.at("docs/")]) == 0
    assert sha256(srv.root / "docs" / "b.bin") == sha256(out / "b.bin")
    assert main(["put", "-q", str(out / "a.txt"), srv.at("docs/renamed.txt")]) == 0
    assert (srv.root / "docs" / "renamed.txt").read_text() == "alpha\n"
    capsys.readouterr()

    assert main(["ls", srv.at("docs")]) == 0
    assert capsys.readouterr().out.splitlines() == ["a.txt", "b.bin", "deep/", "renamed.txt"]
    assert main(["ls", "--json", srv.at("docs")]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["type"], r["size"]) for r in rows][:2] == [
        ("a.txt", "file", 6),
        ("b.bin", "file", 70_000),
    ]
    assert all(r["mtime"].endswith("Z") for r in rows)
    assert main(["ls", "-l", srv.at("docs/a.txt")]) == 0
    long = capsys.readouterr().out.split()
    assert long[0:2] == ["file", "6"] and long[-1] == "a.txt"
    assert main(["ls", "-R", srv.at("")]) == 0
    assert "docs/deep/" in capsys.readouterr().out.splitlines()

    assert main(["hash", srv.at("docs/b.bin")]) == 0
    assert capsys.readouterr().out.split()[0] == sha256(out / "b.bin")
    assert main(["hash", "-a", "crc32", srv.at("docs/a.txt")]) == 0
    assert capsys.readouterr().out.strip().endswith("(CRC32)")

    assert main(["mv", "-q", srv.at("docs/a.txt"), "docs/deep/a.txt"]) == 0
    assert main(["mv", "-q", srv.at("docs/b.bin"), srv.at("docs/deep/b.bin")]) == 0
    assert sorted(p.name for p in (srv.root / "docs" / "deep").iterdir()) == ["a.txt", "b.bin"]

    dest = out / "fetched"
    dest.mkdir()
    assert main(["get", "-q", srv.at("docs/deep/b.bin"), str(dest)]) == 0
    assert sha256(dest / "b.bin") == sha256(out / "b.bin")
    assert main(["get", "-q", "--segments", "3", srv.at("docs/deep/b.bin"), str(dest / "c")]) == 0
    assert sha256(dest / "c") == sha256(out / "b.bin")

    assert main(["rm", "-q", srv.at("docs/renamed.txt")]) == 0
    assert main(["rm", "-q", srv.at("docs")]) == 5  # not empty, no -r
    assert main(["rm", "-q", "-r", srv.at("docs")]) == 0
    assert list(srv.root.iterdir()) == []


def test_get_to_stdout(logged_in: Server, capfd):
    (logged_in.root / "hello.txt").write_text("hello, world\n")
    assert main(["get", logged_in.at("hello.txt"), "-"]) == 0
    assert capfd.readouterr().out == "hello, world\n"


def test_put_parallel(logged_in: Server, out: Path):
    names = []
    for i in range(20):
        p = out / f"file{i:02}.bin"
        p.write_bytes(os.urandom(20_000 + i * 100))
        names.append(str(p))
    assert main(["put", "-q", "--parallel", "4", *names, logged_in.at("")]) == 0
    for name in names:
        assert sha256(logged_in.root / Path(name).name) == sha256(Path(name))


def _make_tree(root: Path, files: int = 30) -> None:
    for i in range(files):
        d = root / f"d{i % 3}" / f"e{i % 2}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i}.txt").write_bytes(os.urandom(i * 37))
    (root / "skip.tmp").write_text("temp")
    (root / "empty").mkdir()


def test_mirror_both_ways(logged_in: Server, out: Path, capsys):
    local = out / "local"
    _make_tree(local)
    url = logged_in.at("site")
    assert main(["mirror", "-n", str(local), url]) == 0
    plan = capsys.readouterr().out.splitlines()
    assert "mkdir  d0" in plan and any(line.startswith("copy   d1/e1/f1.txt") for line in plan)
    assert not (logged_in.root / "site").exists()  # a dry run changes nothing

    assert main(["mirror", "-q", "--parallel", "3", "--exclude", "*.tmp", str(local), url]) == 0
    expected = {k: v for k, v in tree(local).items() if k != "skip.tmp"}
    assert tree(logged_in.root / "site") == expected
    # Nothing changed: the second run copies nothing (times went across with MFMT).
    assert main(["mirror", "-n", "--exclude", "*.tmp", str(local), url]) == 0
    assert capsys.readouterr().out == ""

    back = out / "back"
    assert main(["mirror", "-q", url, str(back)]) == 0
    assert tree(back) == expected
    assert main(["mirror", "-n", url, str(back)]) == 0
    assert capsys.readouterr().out == ""

    # Changes upstream: a new file, a removed one, a rewritten one; --delete follows.
    (local / "d0" / "e0" / "f0.txt").unlink()
    (local / "new.txt").write_text("new")
    os.utime(local / "d1" / "e1" / "f1.txt", (1, 1))  # older than the copy: not "newer"
    assert (
        main(["mirror", "-q", "--only-newer", "--delete", "--exclude", "*.tmp", str(local), url])
        == 0
    )
    remote = tree(logged_in.root / "site")
    assert "new.txt" in remote and "d0/e0/f0.txt" not in remote
    assert main(["mirror", "-q", "--delete", "--include", "*.txt", url, str(back)]) == 0
    assert tree(back) == remote


def test_mirror_needs_one_url(out: Path, capsys):
    assert main(["mirror", str(out), str(out)]) == 2
    assert "one local folder" in capsys.readouterr().err


# --- exit codes -------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_exit_code_unknown_host_and_refused_connection(out: Path):
    bad_host = run_cli("ls", "ftp://nonexistent.invalid/")
    assert bad_host.returncode == 3
    assert "unknown host nonexistent.invalid" in bad_host.stderr
    refused = run_cli("get", f"ftp://127.0.0.1:{_free_port()}/x", str(out))
    assert refused.returncode == 3
    assert "cannot connect" in refused.stderr
    assert bad_host.stdout == refused.stdout == ""


def test_exit_code_refused_login(ffserver: Server):
    wrong = run_cli("ls", ffserver.at(""), env={"FILEFERRY_PASSWORD": "wrong"})
    assert wrong.returncode == 4
    assert "login as alice@127.0.0.1 refused: 530" in wrong.stderr
    assert "wrong" not in wrong.stderr  # the password is never echoed


def test_no_password_without_a_terminal_is_a_login_error(ffserver: Server):
    result = run_cli("ls", ffserver.at(""))
    assert result.returncode == 4
    assert "FILEFERRY_PASSWORD" in result.stderr


def test_exit_code_missing_remote_and_local_files(logged_in: Server, out: Path, capsys):
    assert main(["get", "-q", logged_in.at("missing.bin"), str(out)]) == 5
    assert "missing.bin" in capsys.readouterr().err
    assert main(["put", "-q", str(out / "nope"), logged_in.at("")]) == 6
    assert "cannot read" in capsys.readouterr().err
    assert list(out.iterdir()) == []


def test_exit_code_usage():
    assert main(["get", "http://example.com/x"]) == 2
    with pytest.raises(SystemExit) as info:
        main(["get"])
    assert info.value.code == 2


def test_exit_code_disk_full_on_dev_full(logged_in: Server, capsys):
    (logged_in.root / "data.bin").write_bytes(os.urandom(200_000))
    assert main(["get", "-q", logged_in.at("data.bin"), "/dev/full"]) == 6
    assert "No space left on device" in capsys.readouterr().err


def test_exit_code_file_size_limit_is_a_local_error(ffserver: Server, out: Path):
    """RLIMIT_FSIZE makes writes fail with EFBIG, as a full small file system would."""
    (ffserver.root / "data.bin").write_bytes(os.urandom(3_000_000))
    code = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (500000, 500000));"
        "from fileferry.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    result = _python(code, "get", "-q", ffserver.at("data.bin"), str(out), env=ffserver.env)
    assert result.returncode == 6, result.stderr
    assert "File too large" in result.stderr
    assert not (out / "data.bin").exists()


def _python(code: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    from clientkit import SRC

    full = {**os.environ, **env, "PYTHONPATH": str(SRC), "PYTHONDONTWRITEBYTECODE": "1"}
    import sys

    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_get_resumes_after_the_client_was_killed(ffserver: Server, out: Path):
    data = os.urandom(3_000_000)
    (ffserver.root / "big.bin").write_bytes(data)
    # SIGXFSZ at its default action kills the client the moment its file reaches 1 MB.
    killer = (
        "import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_DFL);"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1000000, 1000000));"
        "from fileferry.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    killed = _python(killer, "get", "-q", ffserver.at("big.bin"), str(out), env=ffserver.env)
    assert killed.returncode == -signal.SIGXFSZ
    part = out / "big.bin.fileferry-part"
    assert part.stat().st_size == 1_000_000
    assert not (out / "big.bin").exists()

    resumed = run_cli("get", ffserver.at("big.bin"), str(out), env=ffserver.env)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed at 976.6 KiB, SHA-256 verified" in resumed.stderr
    assert sha256(out / "big.bin") == sha256(ffserver.root / "big.bin")
    assert not part.exists()


@pytest.mark.parametrize("command", ["get", "put", "ls", "mirror", "rm"])
def test_help_documents_every_exit_status(command: str):
    from fileferry.client.errors import ExitCode

    done = run_cli(command, "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    for code in ExitCode:
        assert f" {int(code)} " in text, f"exit status {int(code)} ({code.name}) undocumented"
