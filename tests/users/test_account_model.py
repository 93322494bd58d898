"""Account: per-folder permissions, login rules; the field spellings operators write."""

from __future__ import annotations

import datetime as dt

import pytest

from fileferry.errors import ConfigError
from fileferry.users import fields
from fileferry.users.base import Account, FolderRule, VirtualFolder, address_allowed

RULES = Account(
    "alice",
    "/srv/alice",
    permissions="elr",
    folder_permissions=(
        FolderRule("/in", "elw"),
        FolderRule("/in/private", ""),
        FolderRule("/pub", "elradfmw"),
    ),
)


@pytest.mark.parametrize(
    ("letter", "path", "allowed"),
    [
        ("r", "/", True),
        ("w", "/", False),
        ("w", "/in", True),
        ("w", "/in/x.txt", True),
        ("r", "/in/x.txt", False),  # the override replaces, it does not add
        ("d", "/in/x.txt", False),
        ("l", "/in/private", False),
        ("w", "/in/private/deeper/x", False),
        ("w", "/inbox/x", False),  # a prefix of the name is not the folder
        ("d", "/pub/a/b/c", True),
        ("M", "/pub/a", False),
    ],
)
def test_the_deepest_folder_rule_wins(letter: str, path: str, allowed: bool) -> None:
    assert RULES.permits(letter, path) is allowed


def test_a_root_rule_covers_everything_not_overridden() -> None:
    a = Account("a", "/h", permissions="elradfmw", folder_permissions=(FolderRule("/", "el"),))
    assert not a.permits("r", "/x") and a.permits("l", "/x")
    assert a.permissions_at("/deep/er") == "el"


def test_refusals() -> None:
    now = 1_700_000_000.0
    assert Account("a", "/h").refusal("10.0.0.1", now) is None
    assert Account("a", "/h", disabled=True).refusal("10.0.0.1", now) == "Account disabled."
    assert Account("a", "/h", expires=now).refusal("10.0.0.1", now) == "Account expired."
    assert Account("a", "/h", expires=now + 1).refusal("10.0.0.1", now) is None
    nets = Account("a", "/h", allowed_networks=("10.0.0.0/8", "2001:db8::/32"))
    assert nets.refusal("10.1.2.3", now) is None
    assert nets.refusal("::ffff:10.1.2.3", now) is None  # dual-stack sockets
    assert nets.refusal("2001:db8::5", now) is None
    assert nets.refusal("127.0.0.1", now) == "Login not allowed from your address."
    assert nets.refusal("fe80::1%eth0", now) == "Login not allowed from your address."
    assert not address_allowed("garbage", ("0.0.0.0/0",))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("1024", 1024),
        ("1K", 1024),
        ("1KiB", 1024),
        ("1KB", 1000),
        ("1.5M", 1572864),
        ("10G", 10 * 1024**3),
        ("2TB", 2 * 1000**4),
        (4096, 4096),
        (" 3 m ", 3 * 1024**2),
    ],
)
def test_sizes(text: object, expected: int) -> None:
    assert fields.parse_size(text, "quota_bytes") == expected


@pytest.mark.parametrize("bad", ["-1", "1X", "ten", "", True, "1e3"])
def test_bad_sizes_name_the_key(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"^quota_bytes: "):
        fields.parse_size(bad, "quota_bytes")


def test_permissions_are_canonical_and_checked() -> None:
    assert fields.parse_permissions("wrleX") == "elrwX"
    assert fields.parse_permissions("") == ""
    with pytest.raises(ConfigError, match="unknown permission letter 'z'"):
        fields.parse_permissions("elz")


def test_folder_and_mount_spellings() -> None:
    assert fields.parse_folder_rule("/in/=elw") == FolderRule("/in", "elw")
    assert fields.parse_folder_rule("/x=") == FolderRule("/x", "")
    folder = fields.parse_virtual_folder("/pub=/srv/pub:ro")
    assert folder == VirtualFolder("/pub", "/srv/pub", True)
    assert fields.parse_virtual_folder("/pub=/srv/pub").read_only is False
    for bad in ("/pub", "pub=/srv", "/=/srv", "/a/../b=/srv", "/a\0b=/srv"):
        with pytest.raises(ConfigError):
            fields.parse_virtual_folder(bad)


def test_networks_and_expiry() -> None:
    assert fields.parse_network("10.1.2.3") == "10.1.2.3/32"
    assert fields.parse_network(" 10.0.0.0/8") == "10.0.0.0/8"
    # Host bits set: refused (it used to become 10.0.0.0/8 without a word).
    with pytest.raises(ConfigError, match=r"host bits set; did you mean 10\.0\.0\.0/8\?"):
        fields.parse_network("10.1.2.3/8")
    with pytest.raises(ConfigError):
        fields.parse_network("10.0.0.0/33")
    day_end = dt.datetime(2031, 1, 1, tzinfo=dt.UTC).timestamp()
    assert fields.parse_expiry("2030-12-31") == day_end
    assert fields.parse_expiry(dt.date(2030, 12, 31)) == day_end
    assert fields.parse_expiry("2030-12-31T12:00:00Z") == day_end - 12 * 3600
    assert fields.parse_expiry("never") is None
    assert fields.format_expiry(day_end) == "2031-01-01T00:00:00Z"
    with pytest.raises(ConfigError, match="expires"):
        fields.parse_expiry("31/12/2030")


def test_toml_tables_give_account_fields() -> None:
    got = fields.account_fields_from_toml(
        {
            "permissions": "elr",
            "folder_permissions": {"/drop": "elw"},
            "virtual_folders": [{"path": "/pub", "source": "/srv/pub", "read_only": True}],
            "quota_bytes": "1M",
            "quota_files": 10,
            "max_sessions": 2,
            "upload_rate": "64K",
            "download_rate": 1000,
            "allowed_networks": ["10.0.0.0/8"],
            "expires": dt.date(2030, 1, 1),
            "disabled": False,
        },
        "f.toml: user #1",
    )
    account = Account("x", "/h", **got)
    assert account.quota_bytes == 1024**2 and account.upload_rate == 65536
    assert account.virtual_folders == (VirtualFolder("/pub", "/srv/pub", True),)
    with pytest.raises(ConfigError, match="user #1: virtual_folders: unknown key 'ro'"):
        fields.account_fields_from_toml(
            {"virtual_folders": [{"path": "/p", "source": "/s", "ro": True}]}, "f.toml: user #1"
        )
