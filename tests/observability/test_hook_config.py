"""``[[hook]]`` tables are checked whole at start, and what a hook is told is made safe."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fileferry.config import load_toml
from fileferry.errors import ConfigError
from fileferry.observability import Origin
from fileferry.observability import events as seen
from fileferry.observability.hooks.payload import environment, first_line, kind_of, payload

GOOD = """
[[hook]]
name = "scan"
on = ["upload"]
command = ["/usr/bin/clamdscan", "--no-summary"]
before_reply = true
timeout = 60

[[hook]]
on = ["login-failed", "ban"]
url = "https://alerts.example.com/ftp"
headers = { Authorization = "Bearer x" }
retries = 5
backoff = 0.5

[limits.hooks]
max_running = 2
"""


def test_a_good_config_reads_whole(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(GOOD)
    values = load_toml(str(path))
    scan, alert = values["hooks"]
    assert (scan.name, scan.on, scan.command, scan.before_reply, scan.timeout) == (
        "scan",
        ("upload",),
        ("/usr/bin/clamdscan", "--no-summary"),
        True,
        60.0,
    )
    assert (alert.name, alert.on, alert.retries, alert.backoff) == (
        "hook-2",
        ("login-failed", "ban"),
        5,
        0.5,
    )
    assert alert.headers == (("Authorization", "Bearer x"),)
    assert values["hook_max_running"] == 2


@pytest.mark.parametrize(
    ("table", "error"),
    [
        ('on = ["uplaod"]\ncommand = ["/bin/true"]', "unknown event 'uplaod' in 'on'"),
        ('on = ["upload"]', "give 'command' (a list of strings) or 'url'"),
        (
            'on = ["upload"]\ncommand = ["/bin/true"]\nurl = "https://x/"',
            "give 'command' or 'url', not both",
        ),
        ('command = ["/bin/true"]', "'on' must be a list of event names"),
        ('on = ["upload"]\ncommand = ["true"]', "command[0] must be an absolute path"),
        ('on = ["upload"]\ncommand = []', "'command' must be a non-empty list"),
        ('on = ["upload"]\nurl = "ftp://x/"', "url must be http://HOST/... or https://HOST/"),
        (
            'on = ["upload", "delete"]\ncommand = ["/bin/true"]\nbefore_reply = true',
            "before_reply is for hooks on",
        ),
        ('on = ["upload"]\ncommand = ["/bin/true"]\ntimeout = 0', "timeout must be between"),
        ('on = ["upload"]\ncommand = ["/bin/true"]\nshell = true', "unknown key 'shell'"),
        (
            'on = ["upload"]\nurl = "https://x/"\nheaders = { Host = "y" }',
            "headers may not set",
        ),
    ],
)
def test_a_bad_hook_is_one_clear_error(tmp_path, table, error):
    path = tmp_path / "c.toml"
    path.write_text(f"[[hook]]\n{table}\n")
    with pytest.raises(ConfigError) as raised:
        load_toml(str(path))
    assert error in str(raised.value)
    assert str(raised.value).startswith(f"{path}: hook #1")


def test_serve_refuses_to_start_with_a_bad_hook(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[[hook]]\non = ["upload", "nope"]\ncommand = ["/bin/true"]\n')
    done = subprocess.run(
        [sys.executable, "-m", "fileferry", "serve", str(tmp_path), "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"fileferry: {path}: hook #1 (hook-1): unknown event 'nope' in 'on' (known: upload,"
        " download, delete, rename, mkdir, rmdir, login, login-failed, ban)"
    ]


def test_what_a_hook_is_told_is_made_safe():
    origin = Origin(4, "192.0.2.1", "eve")
    event = seen.FileUploaded(origin, "STOR", "/in/a\nb\x1b[31m\udcff.txt", 7, None)
    body = payload(kind_of(event), event)
    assert body["path"] == "/in/a\nb\x1b[31m\udcff.txt"  # JSON keeps the name as it is
    env = environment(body)
    assert env["FILEFERRY_EVENT_PATH"] == "/in/a?b?[31m?.txt"
    assert env["FILEFERRY_EVENT_LOCAL_PATH"] == ""
    assert env["FILEFERRY_EVENT_SIZE"] == "7"
    assert len(environment({**body, "path": "x" * 100_000})["FILEFERRY_EVENT_PATH"]) == 4096
    assert first_line(b"\n  INFECTED\x1b[2J: yes\r\nmore") == "INFECTED?[2J: yes"
    assert len(first_line(b"y" * 10_000)) == 200


def test_only_successful_downloads_are_download_events():
    origin = Origin(1, "::1", "bob")

    def finished(command: str, code: int) -> seen.TransferFinished:
        return seen.TransferFinished(origin, command, "/f", "download", 1, 0.1, code)

    assert kind_of(finished("RETR", 226)) == "download"
    assert kind_of(finished("RETR", 426)) is None
    assert kind_of(finished("LIST", 226)) is None
    assert kind_of(seen.Banned(origin, "::/64")) == "ban"
    assert kind_of(seen.SessionOpened(origin)) is None
