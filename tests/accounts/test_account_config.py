"""Account settings from TOML: the complete example, [[user]] account keys, the database."""

from __future__ import annotations

import asyncio
import ftplib
import re
import subprocess
import sys
from pathlib import Path

import pytest
from accountkit import put, refused_upload, write_db

from fileferry import config
from fileferry.backends import open_users
from fileferry.cli.config import EXAMPLE
from fileferry.errors import ConfigError
from fileferry.server.thread import ServerThread
from fileferry.users.base import Account, FolderRule, VirtualFolder
from fileferry.users.fields import ACCOUNT_KEYS

#: How the config's lists, which are not plain keys, show in the example.
SPECIAL = {"users": "[[user]]", "site_exec": "[site_exec."}


def test_the_example_names_every_setting_and_loads(tmp_path: Path) -> None:
    keys = set(re.findall(r"^#? ?([a-z0-9_]+) = ", EXAMPLE, re.M))
    for key in config.SETTINGS:
        assert key in keys, f"{key} missing in the example"
    for shown in SPECIAL.values():
        assert shown in EXAMPLE
    for key in (*ACCOUNT_KEYS, "name", "password", "home", "write", "site_exec"):
        assert key in keys, f"account key {key} missing in the example"
    path = tmp_path / "example.toml"
    path.write_text(EXAMPLE)
    values = config.load_toml(str(path))
    user = values["users"][0]  # type: ignore[index]
    assert dict(user.account_fields)["quota_bytes"] == 10 * 1024**3
    # Uncommenting the optional settings gives a file that still loads.
    path.write_text(re.sub(r"^# (\w+ = )", r"\1", EXAMPLE, flags=re.M))
    assert config.load_toml(str(path))["tls_implicit_port"] == 990


def test_config_example_command_prints_it() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "fileferry", "config", "example"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and r.stdout == EXAMPLE


def _load(tmp_path: Path, text: str) -> dict[str, object]:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return config.load_toml(str(path))


def test_user_tables_take_every_account_field(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    values = _load(
        tmp_path,
        f"""
        root = "{tmp_path}"
        download_rate = "10M"
        [[user]]
        name = "cam"
        password = "pw"
        permissions = "elw"
        site_exec = true
        folder_permissions = {{ "/ro" = "elr" }}
        virtual_folders = [{{ path = "/shared", source = "{shared}", read_only = true }}]
        quota_bytes = "1M"
        quota_files = 5
        max_sessions = 2
        upload_rate = 4096
        download_rate = "8K"
        allowed_networks = ["10.0.0.0/8"]
        expires = 2030-06-30
        disabled = true
        """,
    )
    cfg = config.build(values, {"port": 0})
    assert cfg.limits.rates.download == 10 * 1024**2
    store = open_users(cfg)
    found = asyncio.run(store.find("cam"))  # type: ignore[attr-defined]
    assert found is not None
    account = found.account
    assert account == Account(
        name="cam",
        home=cfg.storage.root,
        permissions="elwX",
        folder_permissions=(FolderRule("/ro", "elr"),),
        virtual_folders=(VirtualFolder("/shared", str(shared), True),),
        quota_bytes=1024**2,
        quota_files=5,
        max_sessions=2,
        upload_rate=4096,
        download_rate=8192,
        allowed_networks=("10.0.0.0/8",),
        expires=account.expires,
        disabled=True,
    )
    assert account.expires is not None
    asyncio.run(store.close())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[user]]\nname = "a"\npassword = "p"\nquota = 5\n', "unknown key 'quota'"),
        ('[[user]]\nname = "a"\npassword = "p"\nquota_bytes = "5X"\n', "user #1: quota_bytes"),
        ('[[user]]\nname = "a"\npassword = "p"\npermissions = "rwz"\n', "letter 'z'"),
        ('[[user]]\nname = "a"\npassword = "p"\nexpires = "soon"\n', "user #1: expires"),
        ('[[user]]\nname = "a"\npassword = "p"\nallowed_networks = "10/8"\n', "expected a list"),
        ("upload_rate = -5\n", "upload_rate"),
        ("dbase = 'x'\n", "unknown key 'dbase'"),
    ],
)
def test_bad_account_settings_are_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        _load(tmp_path, text)


def test_database_setting_is_checked(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(ConfigError, match="does not exist"):
        config.build({"root": str(root), "db": str(tmp_path / "none.db")})
    inside = write_db(root / "users.db")
    with pytest.raises(ConfigError, match="inside the served folder"):
        config.build({"root": str(root), "db": str(inside)})
    home = tmp_path / "home"
    home.mkdir()
    in_home = write_db(home / "users.db")
    user = config.UserConfig("u", "x", str(home))
    with pytest.raises(ConfigError, match="inside the served folder"):
        config.build({"root": str(root), "db": str(in_home), "users": (user,)})
    outside = write_db(tmp_path / "users.db")
    cfg = config.build({"root": str(root), "db": str(outside)})
    assert cfg.user_store.db == str(outside)
    env = config.from_environment({"FILEFERRY_DB": str(outside), "FILEFERRY_UPLOAD_RATE": "2M"})
    assert env == {"db": str(outside), "upload_rate": 2 * 1024**2}


def test_static_user_with_quota_and_mount_from_toml(tmp_path: Path) -> None:
    root = tmp_path / "root"
    home = tmp_path / "home"
    pub = tmp_path / "pub"
    for d in (root, home, pub):
        d.mkdir()
    (pub / "readme.txt").write_bytes(b"pub")
    values = _load(
        tmp_path,
        f"""
        root = "{root}"
        anonymous = false
        login_failure_delay = 0
        [[user]]
        name = "scanner"
        password = "pw"
        home = "{home}"
        quota_bytes = 100
        virtual_folders = [{{ path = "/pub", source = "{pub}", read_only = true }}]
        """,
    )
    with ServerThread(config.build(values, {"port": 0})) as thread:
        f = ftplib.FTP(timeout=20)
        f.connect(*thread.address)
        f.login("scanner", "pw")
        assert sorted(f.nlst()) == ["pub"]
        put(f, "a.bin", b"a" * 100)
        assert refused_upload(f, "b.bin", b"b").startswith("552")
        f.quit()
    assert (home / "a.bin").stat().st_size == 100 and not (home / "b.bin").exists()


@pytest.mark.parametrize(
    "bad_hash",
    [
        "$argon2id$v=19$m=19456,t=2,p=1$typo",  # truncated argon2
        "$2b$12$notsupportedbcrypthashxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",  # bcrypt: not ours
        "scrypt$16384$8$1",  # too few parts
        "plaintext-password",
        "",
    ],
)
def test_a_password_hash_that_cannot_be_verified_fails_at_start(
    tmp_path: Path, bad_hash: str
) -> None:
    text = f'[[user]]\nname = "scanner"\npassword_hash = "{bad_hash}"\n'
    with pytest.raises(ConfigError, match=r"user #1 \('scanner'\): password_hash") as info:
        _load(tmp_path, text)
    assert "\n" not in str(info.value)


def test_a_supported_password_hash_loads_and_logs_in(tmp_path: Path) -> None:
    from fileferry.users.passwords import hash_password, hash_scrypt

    root = tmp_path / "root"
    root.mkdir()
    values = _load(
        tmp_path,
        f'root = "{root}"\nanonymous = false\nlogin_failure_delay = 0\n'
        f'[[user]]\nname = "argon"\npassword_hash = "{hash_password("pw1")}"\n'
        f'[[user]]\nname = "old"\npassword_hash = "{hash_scrypt("pw2")}"\n',
    )
    with ServerThread(config.build(values, {"port": 0})) as thread:
        for name, password in (("argon", "pw1"), ("old", "pw2")):
            f = ftplib.FTP(timeout=20)
            f.connect(*thread.address)
            assert f.login(name, password).startswith("230")
            f.quit()
