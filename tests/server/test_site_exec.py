"""SITE EXEC: only what the operator mapped, only for users allowed, never via a shell."""

from __future__ import annotations

import ftplib
import shutil
from pathlib import Path

import pytest
from serverkit import connect

from fileferry import config
from fileferry.config import SiteExecCommand, UserConfig
from fileferry.errors import ConfigError
from fileferry.server.thread import ServerThread
from fileferry.users.passwords import hash_password

ECHO = shutil.which("echo") or "/bin/echo"
SLEEP = shutil.which("sleep") or "/bin/sleep"
YES = shutil.which("yes") or "/usr/bin/yes"
PWD = shutil.which("pwd") or "/bin/pwd"

COMMANDS = (
    SiteExecCommand("greet", (ECHO, "hello"), (r"[A-Za-z0-9_]{1,32}",)),
    SiteExecCommand("say", (ECHO,), (r".+", r".+")),
    SiteExecCommand("hang", (SLEEP, "30"), (), timeout=0.5),
    SiteExecCommand("flood", (YES,), (), max_output=1000),
    SiteExecCommand("where", (PWD,), ()),
)


@pytest.fixture
def exec_server(root: Path):
    users = (
        UserConfig("ops", hash_password("pw"), site_exec=True),
        UserConfig("plain", hash_password("pw")),
    )
    cfg = config.build(
        {
            "root": str(root),
            "port": 0,
            "login_failure_delay": 0,
            "users": users,
            "site_exec": COMMANDS,
        }
    )
    with ServerThread(cfg) as srv:
        yield srv


def login(srv, user: str = "ops") -> ftplib.FTP:
    f = connect(srv)
    f.login(user, "pw")
    return f


def test_allowed_command_runs_with_allowed_argument(exec_server) -> None:
    f = login(exec_server)
    reply = f.sendcmd("SITE EXEC greet world")
    assert reply.startswith("200-")
    assert "hello world" in reply and reply.splitlines()[-1] == "200 Exit status 0."
    assert "EXEC" in f.sendcmd("SITE HELP")
    assert "greet" in f.sendcmd("SITE EXEC")
    f.quit()


def test_runs_in_the_users_home(exec_server, root: Path) -> None:
    f = login(exec_server)
    assert str(root) in f.sendcmd("SITE EXEC where")
    f.quit()


def test_shell_metacharacters_are_refused_or_inert(exec_server, root: Path) -> None:
    f = login(exec_server)
    with pytest.raises(ftplib.error_perm, match=r"^501"):
        f.sendcmd("SITE EXEC greet x;touch${IFS}pwned")
    # Where the operator allowed anything, the characters reach the program
    # literally: no shell ever sees them.
    reply = f.sendcmd("SITE EXEC say $(touch${IFS}pwned);|&`id` >out")
    assert "$(touch${IFS}pwned);|&`id` >out" in reply
    assert not (root / "pwned").exists() and not (root / "out").exists()
    f.quit()


@pytest.mark.parametrize(
    "line",
    [
        "SITE EXEC say ../../etc/passwd",
        "SITE EXEC say ..",
        "SITE EXEC say -rf",
        "SITE EXEC say --output=/etc/passwd",
        "SITE EXEC greet a b",  # more arguments than patterns
        "SITE EXEC hang 1",
    ],
)
def test_path_tricks_options_and_extra_arguments_are_refused(exec_server, line: str) -> None:
    f = login(exec_server)
    with pytest.raises(ftplib.error_perm, match=r"^501"):
        f.sendcmd(line)
    assert f.sendcmd("NOOP").startswith("200")
    f.quit()


def test_unknown_names_and_unprivileged_users_are_refused(exec_server) -> None:
    f = login(exec_server)
    for name in ("rm", "../greet", "/bin/sh", "GREET2"):
        with pytest.raises(ftplib.error_perm, match=r"^550"):
            f.sendcmd(f"SITE EXEC {name}")
    f.quit()
    g = login(exec_server, "plain")
    with pytest.raises(ftplib.error_perm, match=r"^550"):
        g.sendcmd("SITE EXEC greet x")
    g.quit()


def test_hung_command_is_killed(exec_server) -> None:
    f = login(exec_server)
    with pytest.raises(ftplib.error_temp, match=r"^451") as info:
        f.sendcmd("SITE EXEC hang")
    assert "killed" in str(info.value)
    assert f.sendcmd("NOOP").startswith("200")
    f.quit()


def test_output_is_capped(exec_server) -> None:
    f = login(exec_server)
    reply = f.sendcmd("SITE EXEC flood")
    assert "[output truncated at 1000 bytes]" in reply
    assert len(reply) < 4000
    f.quit()


def test_not_configured_means_not_there(server) -> None:
    f = connect(server)
    f.login("alice", "secret")
    with pytest.raises(ftplib.error_perm, match=r"^501"):
        f.sendcmd("SITE EXEC greet")
    assert "EXEC" not in f.sendcmd("SITE HELP")
    f.quit()


def test_site_exec_config_from_toml(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(
        f'[site_exec.disk]\nargv = ["{ECHO}", "df"]\nargs = ["[a-z]+"]\ntimeout = 5\n'
        '[[user]]\nname = "ops"\npassword = "pw"\nsite_exec = true\n'
    )
    values = config.load_toml(str(good))
    (cmd,) = values["site_exec"]
    assert cmd.name == "disk" and cmd.argv == (ECHO, "df") and cmd.timeout == 5
    (user,) = values["users"]
    assert user.site_exec
    for body, needle in [
        ('[site_exec.x]\nargv = ["echo"]\n', "absolute"),
        ("[site_exec.x]\nargv = []\n", "argv"),
        (f'[site_exec.x]\nargv = ["{ECHO}"]\nargs = ["("]\n', "pattern"),
        (f'[site_exec.x]\nargv = ["{ECHO}"]\nshell = true\n', "shell"),
        (f'[site_exec."a b"]\nargv = ["{ECHO}"]\n', "names"),
    ]:
        bad = tmp_path / "bad.toml"
        bad.write_text(body)
        with pytest.raises(ConfigError, match=needle):
            config.load_toml(str(bad))
