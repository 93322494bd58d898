"""Each setting keeps its TOML key, FILEFERRY_* variable and flag, all made from one description."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fileferry import config
from fileferry.cli import build_parser
from fileferry.config.flags import flag_values
from fileferry.errors import ConfigError

#: The contract with operators (README options table, docs): flat key -> (text, typed value).
CONTRACT: dict[str, tuple[str, object]] = {
    "root": ("/srv", "/srv"),
    "host": ("::", "::"),
    "port": ("2100", 2100),
    "shutdown_grace": ("12.5", 12.5),
    "anonymous": ("false", False),
    "write": ("yes", True),
    "passive_ports": ("60000-60100", (60000, 60100)),
    "masquerade_address": ("203.0.113.7", "203.0.113.7"),
    "idle_timeout": ("60", 60.0),
    "data_timeout": ("61.5", 61.5),
    "accept_timeout": ("30", 30.0),
    "login_failure_delay": ("0", 0.0),
    "log_level": ("DEBUG", "debug"),
    "banner": ("hi", "hi"),
    "max_line": ("1024", 1024),
    "max_list_entries": ("10", 10),
    "fsync_uploads": ("on", True),
    "fs_calls": ("thread", "thread"),
    "temp_max_age": ("0", 0.0),
    "resumable_uploads": ("yes", True),
    "partial_max_age": ("86400", 86400.0),
    "tls_cert": ("c.pem", "c.pem"),
    "tls_key": ("k.pem", "k.pem"),
    "tls_self_signed": ("1", True),
    "tls_required": ("true", True),
    "tls_implicit_port": ("990", 990),
    "tls_session_reuse": ("off", False),
    "max_sessions": ("10", 10),
    "max_sessions_per_ip": ("2", 2),
    "max_commands_per_second": ("50", 50.0),
    "login_timeout": ("5", 5.0),
    "ban_threshold": ("3", 3),
    "ban_window": ("60", 60.0),
    "ban_time": ("120", 120.0),
    "ban_max_time": ("240", 240.0),
    "max_login_checks_per_ip": ("2", 2),
    "max_login_checks_per_user": ("6", 6),
    "max_passive_ports_per_ip": ("5", 5),
    "db": ("/var/lib/users.db", "/var/lib/users.db"),
    "s3_endpoint": ("https://s3.example:9000", "https://s3.example:9000"),
    "s3_region": ("eu-west-1", "eu-west-1"),
    "s3_allow_http": ("true", True),
    "s3_access_key_id": ("AKIAEXAMPLE", "AKIAEXAMPLE"),
    "s3_secret_access_key_file": ("/run/secrets/s3", "/run/secrets/s3"),
    "upload_rate": ("2M", 2 * 1024**2),
    "download_rate": ("1K", 1024),
    "lease_time": ("20", 20.0),
    "workers": ("3", 3),
    "admin": ("127.0.0.1:8021", "127.0.0.1:8021"),
    "admin_usage_interval": ("60", 60.0),
    "log_format": ("JSON", "json"),
    "xferlog": ("/var/log/xferlog", "/var/log/xferlog"),
    "metrics": ("[::1]:9101", ("::1", 9101)),
    "metrics_per_user": ("off", False),
    "metrics_max_users": ("50", 50),
    "node_name": ("ftp-1.example", "ftp-1.example"),
    "hook_max_running": ("2", 2),
    "hook_queue": ("50", 50),
    "proxy_protocol": ("on", True),
    "trusted_proxy": ("10.0.0.0/8", ("10.0.0.0/8",)),
    "proxy_header_timeout": ("2", 2.0),
}

#: Flags of ``serve`` before they were generated, with how a value is given.
FLAGS: dict[str, list[str]] = {
    "host": ["--host", "::"],
    "port": ["--port", "2100"],
    "anonymous": ["--no-anonymous"],
    "write": ["--write"],
    "passive_ports": ["--passive-ports", "60000-60100"],
    "masquerade_address": ["--masquerade-address", "203.0.113.7"],
    "idle_timeout": ["--idle-timeout", "60"],
    "data_timeout": ["--data-timeout", "61.5"],
    "fsync_uploads": ["--fsync-uploads"],
    "fs_calls": ["--fs-calls", "thread"],
    "temp_max_age": ["--temp-max-age", "0"],
    "resumable_uploads": ["--resumable-uploads"],
    "partial_max_age": ["--partial-max-age", "86400"],
    "workers": ["--workers", "3"],
    "tls_cert": ["--tls-cert", "c.pem"],
    "tls_key": ["--tls-key", "k.pem"],
    "tls_self_signed": ["--tls-self-signed"],
    "tls_required": ["--tls-required"],
    "tls_implicit_port": ["--tls-implicit-port", "990"],
    "tls_session_reuse": ["--no-tls-session-reuse"],
    "max_sessions": ["--max-sessions", "10"],
    "max_sessions_per_ip": ["--max-sessions-per-ip", "2"],
    "login_timeout": ["--login-timeout", "5"],
    "db": ["--db", "/var/lib/users.db"],
    "log_level": ["--log-level", "debug"],
    "max_login_checks_per_ip": ["--max-login-checks-per-ip", "2"],
    "max_login_checks_per_user": ["--max-login-checks-per-user", "6"],
    "max_passive_ports_per_ip": ["--max-passive-ports-per-ip", "5"],
    "s3_endpoint": ["--s3-endpoint", "https://s3.example:9000"],
    "s3_region": ["--s3-region", "eu-west-1"],
    "s3_allow_http": ["--s3-allow-http"],
    "s3_access_key_id": ["--s3-access-key-id", "AKIAEXAMPLE"],
    "s3_secret_access_key_file": ["--s3-secret-access-key-file", "/run/secrets/s3"],
    "admin": ["--admin", "127.0.0.1:8021"],
    "log_format": ["--log-format", "json"],
    "xferlog": ["--xferlog", "/var/log/xferlog"],
    "metrics": ["--metrics", "[::1]:9101"],
    "metrics_per_user": ["--no-metrics-per-user"],
    "node_name": ["--node-name", "ftp-1.example"],
    "proxy_protocol": ["--proxy-protocol"],
    "trusted_proxy": ["--trusted-proxy", "10.0.0.0/8"],
}


def test_the_description_covers_exactly_the_contract() -> None:
    assert set(config.SETTINGS) == set(CONTRACT)


@pytest.mark.parametrize("key", sorted(CONTRACT))
def test_every_key_works_in_a_file_and_the_environment(tmp_path: Path, key: str) -> None:
    text, expected = CONTRACT[key]
    path = tmp_path / "c.toml"
    path.write_text(f"{key} = {text!r}\n".replace("'", '"'))
    assert config.load_toml(str(path)) == {key: expected}
    env = config.from_environment({f"FILEFERRY_{key.upper()}": text})
    assert env == {key: expected}


@pytest.mark.parametrize("key", sorted(FLAGS))
def test_every_serve_flag_still_works(key: str) -> None:
    args = build_parser().parse_args(["serve", *FLAGS[key]])
    expected = CONTRACT[key][1]
    if key == "log_level":
        expected = "debug"
    assert flag_values(args) == {key: expected}


def test_a_bad_flag_value_names_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["serve", "--passive-ports", "9-1"])
    assert info.value.code == 2
    assert "--passive-ports" in capsys.readouterr().err


def test_the_nested_form_sets_the_same_settings(tmp_path: Path) -> None:
    flat = tmp_path / "flat.toml"
    flat.write_text('tls_cert = "c.pem"\nmax_sessions = 7\nupload_rate = "1M"\ndata_timeout = 9\n')
    nested = tmp_path / "nested.toml"
    nested.write_text(
        '[tls]\ncert = "c.pem"\n[limits.sessions]\nmax = 7\n'
        '[limits.rates]\nupload = "1M"\n[data]\ntimeout = 9\n'
    )
    assert config.load_toml(str(flat)) == config.load_toml(str(nested))
    cfg = config.build(config.load_toml(str(nested)), {"root": str(tmp_path), "tls_key": "k.pem"})
    assert cfg.tls.cert == "c.pem" and cfg.limits.sessions.max == 7
    assert cfg.limits.rates.upload == 1024**2 and cfg.data.timeout == 9.0


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('tls_cert = "a"\n[tls]\ncert = "b"\n', "'tls_cert' is set twice"),
        ("[tls]\ncertificate = 'x'\n", "unknown key 'tls.certificate'"),
        ("[limits]\nsessions = 5\n", "unknown key 'limits.sessions'"),
        ("[limits.sessions]\nmax = 'many'\n", "max_sessions: expected a number"),
        ("[nowhere]\nx = 1\n", "unknown key 'nowhere'"),
    ],
)
def test_nested_mistakes_are_one_clear_error(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(needle)):
        config.load_toml(str(path))


def test_build_coerces_values_from_code_like_the_file(tmp_path: Path) -> None:
    cfg = config.build({"root": str(tmp_path), "port": "0", "log_level": "WARNING"})
    assert cfg.port == 0 and cfg.logging.level == "warning"
    with pytest.raises(ConfigError, match="unknown setting 'prot'"):
        config.build({"root": str(tmp_path), "prot": 1})


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"root": "gs://bucket/prefix"}, "root: no backend for gs://"),
        # postgresql:// is registered now (backends/postgres.py): another scheme is not.
        ({"db": "mysql://db.example/ftp"}, "db: no backend for mysql://"),
        ({"db": "postgresql://db.example"}, "db: name the database"),
    ],
)
def test_backends_are_chosen_by_scheme(tmp_path: Path, values: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(needle)):
        config.build({"root": str(tmp_path), **values})
    # A file:// URL is the same as the plain path.
    cfg = config.build({"root": f"file://{tmp_path}"})
    assert cfg.storage.root == str(tmp_path.resolve())


def test_config_keys_lists_every_spelling() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "fileferry", "config", "keys"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0
    for key, leaf in config.SETTINGS.items():
        assert re.search(rf"^{key} .*{leaf.meta.env}", r.stdout, re.M), key
    assert "[tls] cert" in r.stdout and "--[no-]anonymous" in r.stdout


def test_serve_help_lists_the_generated_flags() -> None:
    parser = build_parser()
    serve = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[
        "serve"
    ]
    text = serve.format_help()
    for flag in ("--tls-cert", "--max-sessions-per-ip", "--no-tls-session-reuse", "--db"):
        assert flag in text


def test_a_storage_backend_is_one_module_and_one_registry_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio
    import ftplib
    import hashlib
    import io

    import memory_backend

    from fileferry import backends
    from fileferry.server.thread import ServerThread

    monkeypatch.setitem(backends.STORAGE, "memory", "memory_backend")
    with pytest.raises(ConfigError, match="names no tree"):
        config.build({"root": "memory://"})
    cfg = config.build({"root": "memory://box", "port": 0, "write": True, "login_failure_delay": 0})
    assert cfg.storage.root == "memory://box"
    data = bytes(range(256)) * 1000
    with ServerThread(cfg) as srv:
        f = ftplib.FTP(timeout=20)
        f.connect(*srv.address)
        f.login()
        f.storbinary("STOR up.bin", io.BytesIO(data))
        got = io.BytesIO()
        f.retrbinary("RETR up.bin", got.write)
        assert f.nlst() == ["up.bin"]
        f.quit()
    assert hashlib.sha256(got.getvalue()).digest() == hashlib.sha256(data).digest()
    stored = asyncio.run(memory_backend.TREES["memory://box"].stat("/up.bin"))
    assert stored.size == len(data)
    assert not any(tmp_path.iterdir()) and not Path("memory:").exists()


def test_static_users_grant_the_letter_the_server_checks_for_site_exec() -> None:
    from fileferry.backends.static import EXEC_LETTER
    from fileferry.server.handlers.site import EXEC_PERMISSION

    assert EXEC_LETTER == EXEC_PERMISSION


def test_the_readme_options_table_lists_every_generated_flag() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme.split("## Options of `fileferry serve [DIR]`", 1)[1].split("\n\n", 2)[1]
    for leaf in config.SETTINGS.values():
        if leaf.meta.help is not None:
            flag = leaf.meta.flag
            assert f"`{flag}" in table or f"`--no-{flag[2:]}" in table, flag


def test_a_repeatable_flag_adds_up() -> None:
    args = build_parser().parse_args(
        ["serve", "--trusted-proxy", "10.0.0.1", "--trusted-proxy", "2001:db8::/32,192.0.2.0/24"]
    )
    assert flag_values(args)["trusted_proxy"] == ("10.0.0.1/32", "2001:db8::/32", "192.0.2.0/24")
