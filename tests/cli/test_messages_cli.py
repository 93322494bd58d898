"""What ``fileferry serve`` and ``fileferry user`` say when something is wrong.

Each message here is the exact line an operator reads; each test failed
before its fix (a traceback, a misleading word, or silence).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_serve_cli import Served, run_cli

from fileferry import config
from fileferry.errors import ConfigError


@pytest.fixture
def served_dir(tmp_path: Path) -> Path:
    d = tmp_path / "served"
    d.mkdir()
    (d / "hello.txt").write_bytes(b"hello\n")
    return d


def stderr_after_stop(s: Served) -> str:
    assert s.stop(signal.SIGTERM) == 0
    assert s.proc.stderr is not None
    return s.proc.stderr.read()


# --- 11: unknown FILEFERRY_* variables warn and go on ---------------------------------


def test_an_unknown_environment_variable_is_a_warning_not_a_stop(served_dir: Path) -> None:
    s = Served(
        str(served_dir),
        "--port",
        "0",
        env={"FILEFERRY_BIN": "/opt/fileferry", "FILEFERRY_IDLE_TIMOUT": "5"},
    )
    with s.ftp() as f:
        f.login()
        assert "hello.txt" in f.nlst()
    err = stderr_after_stop(s).splitlines()
    warnings = [line for line in err if "warning" in line]
    assert warnings == [
        "fileferry: warning: environment variable FILEFERRY_BIN is not a fileferry setting;"
        " ignored",
        "fileferry: warning: environment variable FILEFERRY_IDLE_TIMOUT is not a fileferry"
        " setting (did you mean FILEFERRY_IDLE_TIMEOUT?); ignored",
    ]


def test_from_environment_skips_unknown_names_and_reports_each_once() -> None:
    said: list[str] = []
    env = {"FILEFERRY_PORT": "2100", "FILEFERRY_BOGUS": "1", "HOME": "/root"}
    assert config.from_environment(env, warn=said.append) == {"port": 2100}
    assert said == ["environment variable FILEFERRY_BOGUS is not a fileferry setting; ignored"]


def test_a_bad_value_in_a_known_variable_still_stops(served_dir: Path) -> None:
    result = run_cli("serve", str(served_dir), env={"FILEFERRY_PORT": "many"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "fileferry: port: expected a number, got 'many'"
    )


def test_an_unknown_key_in_a_config_file_is_still_an_error(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("bogus = 1\n")
    with pytest.raises(ConfigError, match="unknown key 'bogus'"):
        config.load_toml(str(cfg))


def _env_without(*names: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in names}


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fileferry", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )


# --- 8: a default user database that cannot be read ------------------------------------


@pytest.fixture
def loop_home(tmp_path: Path) -> Path:
    """An XDG_DATA_HOME that is a loop of symlinks: stat says ELOOP, even as root."""
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    return tmp_path / "loop1"


@pytest.fixture
def long_home(tmp_path: Path) -> Path:
    """An XDG_DATA_HOME with a name too long for the file system (ENAMETOOLONG)."""
    return tmp_path / ("x" * 300)


def _xdg(home: Path) -> dict[str, str]:
    return {**os.environ, "XDG_DATA_HOME": str(home)}


@pytest.mark.parametrize(
    ("home", "reason"),
    [("loop_home", "Too many levels of symbolic links"), ("long_home", "File name too long")],
)
def test_user_commands_say_when_the_default_database_cannot_be_read(
    request: pytest.FixtureRequest, home: str, reason: str
) -> None:
    xdg: Path = request.getfixturevalue(home)
    default = xdg / "fileferry" / "users.db"
    for args in (["list"], ["show", "bob"], ["add", "--home", str(xdg.parent), "bob"]):
        result = _run("user", *args, env=_xdg(xdg))
        assert "Traceback" not in result.stderr, args
        assert result.returncode == 1, args
        assert result.stderr.splitlines() == [
            f"fileferry user: user database {default} cannot be read ({reason})"
        ], args


def test_user_commands_with_db_given_never_look_at_the_default(
    loop_home: Path, tmp_path: Path
) -> None:
    db = tmp_path / "users.db"
    home = tmp_path / "bob"
    env = _xdg(loop_home)
    add = _run(
        "user", "--db", str(db), "add", "--home", str(home), "--generate-password", "bob", env=env
    )
    assert add.returncode == 0, add.stderr
    listing = _run("user", "--db", str(db), "list", env=env)
    assert listing.returncode == 0 and "bob" in listing.stdout


def test_serve_with_db_given_never_looks_at_the_default(
    loop_home: Path, tmp_path: Path, served_dir: Path
) -> None:
    db = tmp_path / "users.db"
    add = _run(
        "user", "--db", str(db), "add", "--home", str(served_dir), "--generate-password", "bob",
        env=_xdg(tmp_path / "elsewhere"),
    )  # fmt: skip
    assert add.returncode == 0, add.stderr
    s = Served(
        str(served_dir), "--port", "0", "--db", str(db), env={"XDG_DATA_HOME": str(loop_home)}
    )
    assert f"users from {db}" in s.line
    err = stderr_after_stop(s)
    assert "warning" not in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("home", "reason"),
    [("loop_home", "Too many levels of symbolic links"), ("long_home", "File name too long")],
)
def test_serve_warns_when_the_default_database_cannot_be_read(
    request: pytest.FixtureRequest, home: str, reason: str, served_dir: Path
) -> None:
    xdg: Path = request.getfixturevalue(home)
    default = xdg / "fileferry" / "users.db"
    s = Served(str(served_dir), "--port", "0", env={"XDG_DATA_HOME": str(xdg)})
    assert "anonymous read-only" in s.line
    err = stderr_after_stop(s)
    assert "Traceback" not in err
    assert err.splitlines()[0] == (
        f"fileferry: warning: user database {default} cannot be read ({reason});"
        " serving without it (name one with --db)"
    )


def test_serve_is_quiet_when_the_default_path_runs_through_a_file(
    tmp_path: Path, served_dir: Path
) -> None:
    (tmp_path / "a-file").write_text("")  # as a HOME of /dev/null would: ENOTDIR, nothing there
    s = Served(str(served_dir), "--port", "0", env={"XDG_DATA_HOME": str(tmp_path / "a-file")})
    assert "anonymous read-only" in s.line
    assert "warning" not in stderr_after_stop(s)


# --- 9: misleading messages -----------------------------------------------------------


def _one_line_error(*args: str) -> str:
    result = run_cli(*args)
    assert "Traceback" not in result.stderr
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    return line


def test_db_naming_a_folder_says_it_is_a_folder(tmp_path: Path, served_dir: Path) -> None:
    assert _one_line_error("serve", str(served_dir), "--port", "0", "--db", str(tmp_path)) == (
        f"fileferry: db: {str(tmp_path)!r} is a folder, not a user database file"
    )


def test_db_that_cannot_be_read_says_why(long_home: Path, served_dir: Path) -> None:
    db = str(long_home / "users.db")
    assert _one_line_error("serve", str(served_dir), "--port", "0", "--db", db) == (
        f"fileferry: db: {db!r} cannot be read (File name too long)"
    )


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_missing_tls_certificate_is_named(tmp_path: Path, served_dir: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    args = ("serve", str(served_dir), "--port", "0", "--tls-cert", str(cert), "--tls-key")
    assert _one_line_error(*args, str(key)) == f"fileferry: tls_cert: {str(cert)!r} does not exist"
    from fileferry.server.tls import make_self_signed

    made = make_self_signed(["127.0.0.1"])
    assert _one_line_error(*args[:-2], made.cert, "--tls-key", str(key)) == (
        f"fileferry: tls_key: {str(key)!r} does not exist"
    )


def test_idle_timeout_zero_must_be_more_than_zero(served_dir: Path) -> None:
    # No "no timeout": an FTP server whose idle sessions never end is easy to fill up.
    assert _one_line_error("serve", str(served_dir), "--port", "0", "--idle-timeout", "0") == (
        "fileferry: idle_timeout: must be more than 0 seconds, got 0"
    )
    assert _one_line_error("serve", str(served_dir), "--port", "0", "--idle-timeout", "1e9") == (
        "fileferry: idle_timeout: must be at most 86400 seconds, got 1000000000"
    )
    result = run_cli("serve", str(served_dir), "--port", "0", env={"FILEFERRY_MAX_LINE": "10"})
    assert result.stderr.splitlines() == ["fileferry: max_line: must be at least 512, got 10"]


def test_implicit_port_equal_to_port_says_they_must_differ(served_dir: Path) -> None:
    port = str(_free_port())
    line = _one_line_error(
        "serve", str(served_dir), "--port", port, "--tls-self-signed", "--tls-implicit-port", port
    )
    assert line == f"fileferry: tls_implicit_port: must differ from port (both are {port})"


def _serve_without_dac_override(*args: str) -> subprocess.CompletedProcess[str]:
    """``fileferry serve`` obeying permission bits even as root (no CAP_DAC_*).

    A server that (wrongly) starts is stopped by the timeout, a failure too.
    """
    prefix = []
    if os.geteuid() == 0:
        prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]
    argv = [*prefix, sys.executable, "-m", "fileferry", "serve", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("mode", [0o000, 0o300, 0o600])
def test_an_unreadable_served_folder_is_refused_at_start(tmp_path: Path, mode: int) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(mode)
    try:
        result = _serve_without_dac_override(str(folder), "--port", "0")
    finally:
        folder.chmod(0o700)
    assert "Traceback" not in result.stderr
    assert result.returncode == 2, result.stdout
    assert result.stderr.splitlines() == [
        f"fileferry: root: {str(folder)!r} cannot be read (Permission denied)"
    ]


def test_an_unreadable_user_home_is_refused_at_start(tmp_path: Path, served_dir: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[[user]]\nname = "bob"\npassword = "pw"\nhome = "{home}"\n')
    home.chmod(0)
    try:
        result = _serve_without_dac_override(str(served_dir), "--port", "0", "--config", str(cfg))
    finally:
        home.chmod(0o700)
    assert result.returncode == 2, result.stdout
    assert result.stderr.splitlines() == [
        f"fileferry: user 'bob': home {str(home)!r} cannot be read (Permission denied)"
    ]


@pytest.mark.parametrize("value", ["10.1.2.3/8", "2001:db8::1/32"])
def test_a_network_with_host_bits_is_refused(tmp_path: Path, value: str) -> None:
    import ipaddress

    net = ipaddress.ip_network(value, strict=False)
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}
    result = _run(
        "user", "add", "--home", str(tmp_path / "bob"), "--generate-password",
        "--allow-network", value, "bob", env=env,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"fileferry user: --allow-network: {value!r} has host bits set; did you mean {net}?"
    ]
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[[user]]\nname = "bob"\npassword = "pw"\nallowed_networks = ["{value}"]\n')
    with pytest.raises(ConfigError) as info:
        config.load_toml(str(cfg))
    assert str(info.value) == (
        f"{cfg}: user #1: allowed_networks: {value!r} has host bits set; did you mean {net}?"
    )


def test_a_user_name_with_a_colon_is_refused(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}
    result = _run(
        "user", "add", "--home", str(tmp_path / "bob"), "--generate-password", "bo:b", env=env
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "fileferry user: NAME: user name 'bo:b' may not contain ':'"
    ]
    cfg = tmp_path / "c.toml"
    cfg.write_text('[[user]]\nname = "bo:b"\npassword = "pw"\n')
    with pytest.raises(ConfigError) as info:
        config.load_toml(str(cfg))
    assert str(info.value) == f"{cfg}: user #1: user name 'bo:b' may not contain ':'"
