"""Accounts on S3: homes and virtual folders given as s3:// URLs, quotas, secrets kept out."""

from __future__ import annotations

import contextlib
import ftplib
import io
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from s3kit import READY


def cli(*args: str, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fileferry", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
        env={**os.environ, **env},
    )


def test_user_with_s3_home_quota_and_read_only_s3_folder(seaweed: Any, tmp_path: Path) -> None:
    env = seaweed.env()
    base = f"acct-{uuid.uuid4().hex[:8]}"
    db = str(tmp_path / "users.db")
    # A read-only shared folder with one object in it, put there straight through the store.
    status, _ = seaweed.request("PUT", f"/{seaweed.bucket}/{base}/pub/readme.txt", body=b"shared")
    assert status == 200
    home = f"s3://{seaweed.bucket}/{base}/homes/alice"
    added = cli(
        "user", "add", "alice", "--db", db, "--password-stdin", "--home", home,
        "--permissions", "elradfmwT", "--quota-bytes", "12M",
        "--virtual-folder", f"/pub=s3://{seaweed.bucket}/{base}/pub:ro",
        env=env, stdin="secret-pw\n",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    shown = cli("user", "show", "alice", "--db", db, env=env)
    assert shown.returncode == 0, shown.stderr
    assert home in shown.stdout and "(read-only)" in shown.stdout
    for secret in (env["AWS_SECRET_ACCESS_KEY"], "secret-pw"):
        assert secret not in shown.stdout + shown.stderr + added.stdout + added.stderr

    root = tmp_path / "root"
    root.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fileferry", "serve", str(root), "--port", "0", "--db", db,
         "--no-anonymous"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env={**os.environ, **env},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = READY.search(line)
        assert m, line
        f = ftplib.FTP(timeout=60)
        f.connect(m["host"], int(m["port"]))
        f.login("alice", "secret-pw")
        f.storbinary("STOR /mine.txt", io.BytesIO(b"alice's"))
        out = io.BytesIO()
        f.retrbinary("RETR /pub/readme.txt", out.write)
        assert out.getvalue() == b"shared"
        with pytest.raises(ftplib.error_perm, match=r"^550"):
            f.storbinary("STOR /pub/nope.txt", io.BytesIO(b"x"))
        # Past one part: refused mid-way through a multipart upload, which is aborted.
        f.voidcmd("TYPE I")
        conn = f.transfercmd("STOR /big.bin")
        with contextlib.suppress(OSError):  # the server stops reading once it has refused
            for _ in range(20):
                conn.sendall(bytes(1 << 20))
        conn.close()
        with pytest.raises(ftplib.error_perm, match=r"^552"):
            f.getresp()
        assert sorted(f.nlst("/")) == ["mine.txt", "pub"]
        f.quit()
    finally:
        proc.terminate()
        proc.wait(30)
    from s3sign import list_keys

    keys = list_keys(seaweed, f"{base}/")
    assert f"{base}/homes/alice/mine.txt" in keys
    assert not any(k.endswith(("big.bin", "nope.txt")) for k in keys)
    assert seaweed.pending_uploads(f"{base}/") == []


def test_config_example_and_keys_never_show_a_secret(seaweed: Any, tmp_path: Path) -> None:
    env = seaweed.env()
    secret_file = tmp_path / "secret"
    secret_file.write_text(env["AWS_SECRET_ACCESS_KEY"] + "\n")
    for args in (("config", "example"), ("config", "keys")):
        done = cli(*args, env=env)
        assert done.returncode == 0, done.stderr
        assert env["AWS_SECRET_ACCESS_KEY"] not in done.stdout
    keys = cli("config", "keys", env=env).stdout
    for key in ("s3_endpoint", "s3_region", "s3_allow_http", "s3_secret_access_key_file"):
        assert key in keys


def test_s3_table_in_toml_with_secret_file(seaweed: Any, tmp_path: Path) -> None:
    """Endpoint and credentials from the ``[s3]`` table alone, the secret from its file."""
    env = seaweed.env()
    secret_file = tmp_path / "secret"
    secret_file.write_text(env["AWS_SECRET_ACCESS_KEY"] + "\n")
    toml = tmp_path / "ferry.toml"
    toml.write_text(
        f'root = "s3://{seaweed.bucket}/toml-{uuid.uuid4().hex[:8]}"\n'
        "port = 0\nwrite = true\n"
        "[s3]\n"
        f'endpoint = "{env["AWS_ENDPOINT_URL"]}"\n'
        'region = "us-east-1"\n'
        "allow_http = true\n"
        f'access_key_id = "{env["AWS_ACCESS_KEY_ID"]}"\n'
        f'secret_access_key_file = "{secret_file}"\n'
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "fileferry", "serve", "--config", str(toml)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = READY.search(line)
        assert m, line + (proc.stderr.read() if proc.stderr else "")
        f = ftplib.FTP(timeout=60)
        f.connect(m["host"], int(m["port"]))
        f.login()
        f.storbinary("STOR /t.txt", io.BytesIO(b"toml"))
        assert f.nlst("/") == ["t.txt"]
        f.quit()
    finally:
        proc.terminate()
        proc.wait(30)
