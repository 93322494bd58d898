"""URL parsing, where passwords come from, and the listing parsers."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from fileferry.client.errors import LoginRefused, UsageError
from fileferry.client.listing import Kind, parse_list, parse_mlsx
from fileferry.client.urls import Credentials, is_url, parse_url, resolve_credentials


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ftp://host", ("ftp", "host", 21, None, None, "", True)),
        ("ftp://host/", ("ftp", "host", 21, None, None, "", True)),
        ("ftps://h:2121/a/b", ("ftps", "h", 2121, None, None, "a/b", False)),
        ("ftp://u@h/dir/", ("ftp", "h", 21, "u", None, "dir", True)),
        ("ftp://u%40x:p%3Aw@h/f", ("ftp", "h", 21, "u@x", "p:w", "f", False)),
        ("ftp://h//etc/passwd", ("ftp", "h", 21, None, None, "/etc/passwd", False)),
        ("ftp://h/%2Fetc", ("ftp", "h", 21, None, None, "/etc", False)),
        ("ftp://h/a%20b", ("ftp", "h", 21, None, None, "a b", False)),
        ("FTP://[::1]:990/x", ("ftp", "::1", 990, None, None, "x", False)),
    ],
)
def test_parse_url(text, expected):
    u = parse_url(text)
    assert (u.scheme, u.host, u.port, u.user, u.password, u.path, u.directory) == expected


@pytest.mark.parametrize(
    "text",
    ["http://h/x", "ftp:///x", "ftp://h:99999/", "ftp://h/x?y=1", "ftp://h/a%0Ab", "ftp://h:x/"],
)
def test_bad_urls_are_usage_errors(text):
    with pytest.raises(UsageError):
        parse_url(text)


def test_str_never_shows_the_password():
    u = parse_url("ftp://bob:hunter2@h:2121/a%20b")
    assert str(u) == "ftp://bob@h:2121/a%20b"
    assert "hunter2" not in repr(Credentials("bob", "hunter2"))
    assert is_url("FTPS://x") and not is_url("/tmp/ftp://x") and not is_url("x")


def _netrc(home: Path, text: str) -> None:
    path = home / ".netrc"
    path.write_text(text)
    path.chmod(0o600)


def test_anonymous_by_default(isolated_env):
    assert resolve_credentials(parse_url("ftp://h/")) == Credentials("anonymous", "anonymous@")


def test_order_url_then_environment_then_netrc_then_prompt(isolated_env):
    _netrc(isolated_env, "machine h login bob password fromnetrc\n")
    env = {"HOME": str(isolated_env)}
    assert resolve_credentials(parse_url("ftp://h/"), environ=env) == Credentials(
        "bob", "fromnetrc"
    )
    assert resolve_credentials(
        parse_url("ftp://h/"), environ={**env, "FILEFERRY_PASSWORD": "fromenv"}
    ) == Credentials("bob", "fromenv")
    assert resolve_credentials(
        parse_url("ftp://bob:inurl@h/"), environ={**env, "FILEFERRY_PASSWORD": "fromenv"}
    ) == Credentials("bob", "inurl")
    # Another user than netrc's: netrc does not apply, so the prompt is asked.
    asked: list[str] = []

    def prompt(text: str) -> str:
        asked.append(text)
        return "typed"

    got = resolve_credentials(parse_url("ftp://carol@h/"), environ=env, prompt=prompt)
    assert got == Credentials("carol", "typed")
    assert asked == ["Password for carol@h: "]


def test_netrc_default_entry_and_netrc_variable(tmp_path: Path):
    other = tmp_path / "my.netrc"
    other.write_text("default login dave password d4ve\n")
    other.chmod(0o600)
    got = resolve_credentials(parse_url("ftp://anywhere/"), environ={"NETRC": str(other)})
    assert got == Credentials("dave", "d4ve")


def test_a_named_user_without_any_password_is_refused(isolated_env):
    with pytest.raises(LoginRefused, match="FILEFERRY_PASSWORD"):
        resolve_credentials(parse_url("ftp://eve@h/"), environ={"HOME": str(isolated_env)})


def test_mlsd_lines():
    e = parse_mlsx("type=file;size=12;modify=20240102030405; a b.txt", "dir")
    assert e is not None
    assert (e.name, e.path, e.kind, e.size) == ("a b.txt", "dir/a b.txt", Kind.FILE, 12)
    assert e.mtime == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC).timestamp()
    d = parse_mlsx("Type=dir;Modify=20240102030405.5; sub", "")
    assert d is not None and d.kind is Kind.DIR and d.path == "sub"
    assert parse_mlsx("type=cdir; .", "") is None
    assert parse_mlsx("type=pdir; ..", "") is None
    assert parse_mlsx("garbage", "") is None


def test_list_lines():
    now = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
    f = parse_list("-rw-r--r--   1 ftp ftp        1234 Feb 28 13:45 my file.txt", "d", now)
    assert f is not None
    assert (f.name, f.path, f.kind, f.size) == ("my file.txt", "d/my file.txt", Kind.FILE, 1234)
    assert f.mtime == dt.datetime(2024, 2, 28, 13, 45, tzinfo=dt.UTC).timestamp()
    old = parse_list("drwxr-xr-x   2 0 0 4096 Dec 31  2019 archive", "", now)
    assert old is not None and old.kind is Kind.DIR
    assert old.mtime == dt.datetime(2019, 12, 31, tzinfo=dt.UTC).timestamp()
    # A date later in the year than "now" without a year is last year's.
    late = parse_list("-rw-r--r-- 1 a b 1 Dec 24 10:00 x", "", now)
    assert (
        late is not None and late.mtime == dt.datetime(2023, 12, 24, 10, tzinfo=dt.UTC).timestamp()
    )
    link = parse_list("lrwxrwxrwx 1 a b 3 Jan  1 00:00 ln -> target", "", now)
    assert link is not None and (link.name, link.kind) == ("ln", Kind.LINK)
    assert parse_list("total 12", "", now) is None
