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
