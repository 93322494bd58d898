"""A short atheris run over the protocol core, so CI exercises the fuzz target.

Long runs: ``fuzz/run.sh 3600`` (see README). Any crash fails this test and
leaves its reproducer in the temporary artifact directory printed below.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TARGET = Path(__file__).resolve().parents[2] / "fuzz" / "fuzz_protocol.py"


def test_fuzz_protocol_core_briefly(tmp_path: Path) -> None:
    try:
        import atheris  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("atheris is required in CI")
        pytest.skip("atheris not installed")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    result = subprocess.run(
        [
            sys.executable,
            str(TARGET),
            str(corpus),
            "-runs=20000",
            "-max_len=2048",
            f"-artifact_prefix={tmp_path}/",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Done 20000 runs" in result.stderr


def test_fuzz_proxy_header_parser_briefly(tmp_path: Path) -> None:
    try:
        import atheris  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("atheris is required in CI")
        pytest.skip("atheris not installed")
    target = TARGET.parent / "fuzz_proxyheader.py"
    result = subprocess.run(
        [sys.executable, str(target), "-runs=20000", "-max_len=600",
         f"-artifact_prefix={tmp_path}/"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Done 20000 runs" in result.stderr
