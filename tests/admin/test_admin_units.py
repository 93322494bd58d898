"""The admin's pure parts: ``--admin`` addresses, form shapes, per-minute counters."""

from __future__ import annotations

import pytest

from fileferry.config import build
from fileferry.config.hostport import parse_host_port, parse_listen_address, split_host_port
from fileferry.errors import ConfigError
from fileferry.observability import events as seen
from fileferry.webadmin.forms import form_to_fields, parse_account
from fileferry.webadmin.stats import MINUTES, Stats


@pytest.mark.parametrize(
    ("text", "normal", "parts"),
    [
        ("127.0.0.1:8021", "127.0.0.1:8021", ("127.0.0.1", 8021)),
        (" [::1]:8021 ", "[::1]:8021", ("::1", 8021)),
        ("[2001:DB8::0001]:0", "[2001:db8::1]:0", ("2001:db8::1", 0)),
        ("0.0.0.0:08021", "0.0.0.0:8021", ("0.0.0.0", 8021)),
    ],
)
def test_admin_addresses(text, normal, parts):
    assert parse_host_port(text, "admin") == normal
    assert split_host_port(normal) == parts
    # --metrics reads the same text the same way (one parser for both).
    assert parse_listen_address(text, "metrics") == parts
    assert build({"metrics": text}).metrics.address == parts


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("8021", "expected ADDR:PORT"),
        (":8021", "expected ADDR:PORT"),
        ("localhost:8021", "not an IP address"),
        ("::1:8021", "brackets"),  # itself an IPv6 address: refused, not guessed
        ("[::1]8021", "expected ADDR:PORT"),
        ("[::1:8021", "expected ADDR:PORT"),
        ("[127.0.0.1]:80x", "0 to 65535"),
        ("127.0.0.1:70000", "0 to 65535"),
        ("127.0.0.1:http", "0 to 65535"),
    ],
)
def test_bad_admin_addresses_name_the_setting(text, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse_host_port(text, "admin")
    assert str(info.value).startswith("admin:")
    with pytest.raises(ConfigError, match=message) as info:
        build({"metrics": text})
    assert "metrics" in str(info.value)


def test_a_form_becomes_the_json_shapes(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    form = {
        "name": " gina ",
        "home": str(tmp_path / "gina"),
        "folder_permissions": "/in=elw\r\n\r\n/ro = el\n",
        "virtual_folders": f"/v={shared}:ro\n",
        "allowed_networks": "10.0.0.0/8\n192.168.0.0/16",
        "quota_bytes": "1G",
        "quota_files": "",
        "expires": "",
        "disabled": "on",
    }
    values = form_to_fields(form, ["e", "l", "w"])
    assert values["permissions"] == "elw"
    assert values["folder_permissions"] == {"/in": "elw", "/ro": "el"}
    assert values["virtual_folders"] == [{"path": "/v", "source": str(shared), "read_only": True}]
    assert values["allowed_networks"] == ["10.0.0.0/8", "192.168.0.0/16"]
    assert (
        values["quota_files"] == "0" and values["expires"] == "never" and values["disabled"] is True
    )
    parsed = parse_account(values, None, "/var/empty/users.db", adding=True)
    assert parsed.errors == {}
    account = parsed.account
    assert account is not None and account.name == "gina" and account.quota_bytes == 1024**3
    assert [r.path for r in account.folder_permissions] == ["/in", "/ro"]


def test_every_bad_field_is_reported_at_once(tmp_path):
    values = form_to_fields(
        {"name": "x y", "home": str(tmp_path), "quota_bytes": "big", "max_sessions": "-2",
         "folder_permissions": "/nope", "expires": "soon"},
        ["e", "Q"],
    )  # fmt: skip
    parsed = parse_account(values, None, str(tmp_path / "u.db"), adding=True)
    assert parsed.account is None
    assert set(parsed.errors) == {
        "name", "quota_bytes", "max_sessions", "folder_permissions", "expires", "permissions",
    }  # fmt: skip


def test_the_database_may_not_sit_in_a_home(tmp_path):
    values = form_to_fields({"name": "h", "home": str(tmp_path)}, ["e"])
    parsed = parse_account(values, None, str(tmp_path / "users.db"), adding=True)
    assert "holds the user database" in parsed.errors["home"]


def test_stats_count_per_minute_for_an_hour():
    stats = Stats()
    origin = seen.Origin(1, "192.0.2.1", "u")
    base = 1_700_000_000 // 60 * 60
    stats(seen.LoginSucceeded(origin, False, at=base + 1))
    stats(seen.LoginFailed(origin, "u", at=base + 2))
    stats(seen.TransferFinished(origin, "STOR", "/a", "upload", 100, 1.0, 226, at=base + 3))
    stats(seen.TransferFinished(origin, "RETR", "/a", "download", 40, 1.0, 226, at=base + 61))
    stats(seen.TransferFinished(origin, "LIST", "/", "download", 999, 1.0, 226, at=base + 62))
    stats(seen.LoginSucceeded(origin, False, at=base + 5))  # late, into its own minute
    hour = stats.hour(now=base + 90)
    assert len(hour) == MINUTES
    assert (hour[-2].start, hour[-2].logins, hour[-2].failures, hour[-2].up) == (base, 2, 1, 100)
    assert (hour[-1].down, hour[-1].up) == (40, 0)
    assert sum(m.logins for m in stats.hour(now=base + 3600 + 60)) == 0  # an hour later
