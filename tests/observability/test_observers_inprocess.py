"""The observers in process: detail events only when asked for, metric labels, JSON lines."""

from __future__ import annotations

import ftplib
import io
import json
import logging
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from obskit import samples, until, value
from prometheus_client.parser import text_string_to_metric_families

from fileferry import config
from fileferry.observability import Origin, SessionLog
from fileferry.observability import events as seen
from fileferry.observability.jsonlog import JsonFormatter
from fileferry.observability.metrics import Metrics
from fileferry.observability.xferlog import xferlog_line
from fileferry.server.thread import ServerThread


class Recorder:
    def __init__(self, *, detail: bool) -> None:
        self.wants_detail = detail
        self.events: list[seen.SessionEvent] = []
        self._lock = threading.Lock()

    def __call__(self, event: seen.SessionEvent) -> None:
        with self._lock:
            self.events.append(event)

    def closed(self) -> int:
        return sum(isinstance(e, seen.SessionClosed) for e in self.events)


def _config(root: Path) -> config.ServerConfig:
    return config.build(
        {
            "root": str(root),
            "port": 0,
            "write": True,
            "login_failure_delay": 0,
            "users": (config.parse_user_spec("alice:pw"), config.parse_user_spec("carol:pw")),
        }
    )


def _traffic(srv: ServerThread, user: str) -> None:
    f = ftplib.FTP(timeout=20)
    f.connect(*srv.address)
    f.login(user, "pw")
    f.storbinary("STOR up.bin", io.BytesIO(b"u" * 1234))
    with pytest.raises(ftplib.error_perm, match=r"^550"):
        f.retrbinary("RETR missing.bin", io.BytesIO().write)
    with pytest.raises(ftplib.error_perm, match=r"^500"):
        f.sendcmd("BOGUS")
    f.quit()


def test_detail_events_are_built_only_for_observers_that_ask(tmp_path: Path) -> None:
    plain, detailed = Recorder(detail=False), Recorder(detail=True)
    with ServerThread(_config(tmp_path), observers=[plain, detailed]) as srv:
        _traffic(srv, "alice")
        until(lambda: plain.closed() and detailed.closed(), what="the session's end")
    assert not [e for e in plain.events if e.detail]
    commands = [
        (e.command, e.reply_code) for e in detailed.events if type(e) is seen.CommandCompleted
    ]
    assert ("USER", 331) in commands and ("PASS", 230) in commands
    assert ("RETR", 550) in commands and ("", 500) in commands and ("QUIT", 221) in commands
    assert ("STOR", 226) not in commands  # a transfer reports TransferFinished instead
    failed = [e for e in detailed.events if type(e) is seen.StorageFailed]
    assert [(e.command, e.error, e.reply_code) for e in failed] == [("RETR", "NotFound", 550)]
    # Without a detail observer the dispatcher says so, and the shell builds none.
    with ServerThread(_config(tmp_path), observers=[plain]) as srv:
        assert srv.server is not None and not srv.server.app.dispatcher.detailed


def test_per_user_labels_are_capped_and_can_be_switched_off(tmp_path: Path) -> None:
    capped = Metrics(max_users=1)
    flat = Metrics(per_user=False)
    with ServerThread(_config(tmp_path), observers=[SessionLog(), capped, flat]) as srv:
        _traffic(srv, "alice")
        _traffic(srv, "carol")
        until(
            lambda: (
                value(samples(flat.exposition().decode()), "fileferry_sessions") == 0
                and value(samples(flat.exposition().decode()), "fileferry_connections_total") == 2
            ),
            what="both sessions counted",
        )
    by_user = samples(capped.exposition().decode())
    assert value(by_user, "fileferry_upload_bytes_total", user="alice") == 1234
    assert value(by_user, "fileferry_upload_bytes_total", user="_other") == 1234
    assert not [k for k in by_user if ("user", "carol") in k[1]]
    total = samples(flat.exposition().decode())
    assert value(total, "fileferry_upload_bytes_total") == 2468
    assert value(total, "fileferry_upload_files_total") == 2
    assert value(total, "fileferry_commands_total", command="unknown", reply_class="5xx") == 2
    assert not [k for k in total if any(name == "user" for name, _ in k[1])]


def test_json_lines_stay_valid_with_raw_bytes_and_tracebacks() -> None:
    formatter = JsonFormatter("n1")
    event = seen.FileDeleted(Origin(4, "::1", "bob"), "/caf\udce9 \u00e9.txt", at=1_700_000_000.25)
    logger = logging.getLogger("fileferry.session")
    record = logger.makeRecord(logger.name, logging.INFO, "", 0, "x", (), None)
    record.created = event.at
    record.session_event = event
    line = formatter.format(record)
    line.encode("utf-8")  # printable as UTF-8, even with the raw byte
    parsed = json.loads(line)
    assert parsed == {
        "ts": "2023-11-14T22:13:20.250Z", "level": "info", "event": "delete", "session": 4,
        "peer": "::1", "user": "bob", "node": "n1", "path": "/caf\udce9 \u00e9.txt",
    }  # fmt: skip
    try:
        raise ValueError("boom")
    except ValueError:
        failed = logger.makeRecord(
            "fileferry.x", logging.ERROR, "", 0, "it %s", ("broke",), sys.exc_info()
        )
    parsed = json.loads(formatter.format(failed))
    assert parsed["event"] == "log" and parsed["message"] == "it broke"
    assert parsed["level"] == "error" and "ValueError: boom" in parsed["exception"]
    assert "\n" not in formatter.format(failed)


def test_xferlog_dates_are_ctime_style() -> None:
    event = seen.TransferFinished(
        Origin(1, "10.0.0.9", "bob"), "RETR", "/a", "download", 10, 2.6, 426, at=1_764_720_000
    )
    assert xferlog_line(event) == (
        "Wed Dec  3 00:00:00 2025 3 10.0.0.9 10 /a b _ o r bob ftp 0 * i\n"
    )


def test_a_plain_server_never_imports_prometheus_client(tmp_path: Path) -> None:
    probe = (
        "import sys, asyncio\n"
        "from fileferry import config\n"
        "from fileferry.server.app import FTPServer\n"
        f"cfg = config.build({{'root': {str(tmp_path)!r}, 'port': 0}})\n"
        "async def main():\n"
        "    server = FTPServer(cfg)\n"
        "    await server.start()\n"
        "    await server.stop()\n"
        "asyncio.run(main())\n"
        "print('prometheus_client' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr


def test_the_documented_metrics_are_the_exposed_ones() -> None:
    docs = Path(__file__).resolve().parents[2] / "docs"
    metrics = Metrics()
    origin = Origin(1, "127.0.0.1", "bob")
    for event in (
        seen.SessionOpened(origin),
        seen.TransferFinished(origin, "STOR", "/a", "upload", 5, 0.2, 226),
        seen.TransferFinished(origin, "RETR", "/a", "download", 5, 0.1, 226),
        seen.StorageFailed(origin, "RETR", "NotFound", 550),
        seen.Banned(origin, "127.0.0.1"),
    ):
        metrics(event)
    text = metrics.exposition().decode()
    exposed = {name for name, _ in samples(text)}
    exposed |= {family.name for family in text_string_to_metric_families(text)}
    for name in (
        "fileferry_sessions",
        "fileferry_logins_total",
        "fileferry_transfer_seconds_count",
    ):
        assert name in exposed
    for source in ("operations.md", "grafana-dashboard.json"):
        named = set(re.findall(r"fileferry_[a-z_]+[a-z]", (docs / source).read_text()))
        assert named and named <= exposed, (source, named - exposed)


def test_a_full_disk_under_the_xferlog_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    from fileferry.observability.xferlog import XferLog

    full = XferLog("/dev/full")  # every write fails with ENOSPC
    origin = Origin(1, "127.0.0.1", "bob")
    with caplog.at_level(logging.WARNING, "fileferry.xferlog"):
        for _ in range(3):
            full(seen.TransferFinished(origin, "STOR", "/a", "upload", 5, 0.2, 226))
    full.close()
    warnings = [r for r in caplog.records if r.name == "fileferry.xferlog"]
    assert [r.getMessage() for r in warnings] == [
        "cannot write the xferlog /dev/full: No space left on device"
    ]


def test_tls_handshakes_of_implicit_and_data_connections_are_counted(tmp_path: Path) -> None:
    """AUTH TLS arrives as an event; implicit FTPS and PROT P handshakes are counted too."""
    import socket
    import ssl

    from obskit import ReusingFTP_TLS

    cfg = config.build(
        {
            "root": str(tmp_path),
            "port": 0,
            "write": True,
            "login_failure_delay": 0,
            "tls_self_signed": True,
            "tls_implicit_port": 0,
            "users": (config.parse_user_spec("alice:pw"),),
        }
    )
    metrics = Metrics()
    client_tls = ssl.create_default_context()
    client_tls.check_hostname = False
    client_tls.verify_mode = ssl.CERT_NONE

    def tls_counts() -> tuple[float, float]:
        scraped = samples(metrics.exposition().decode())
        return (
            value(scraped, "fileferry_tls_handshakes_total", result="ok"),
            value(scraped, "fileferry_tls_handshakes_total", result="failed"),
        )

    with ServerThread(cfg, observers=[metrics]) as srv:
        assert srv.server is not None
        implicit = srv.server.implicit_address
        assert implicit is not None
        # Explicit: AUTH TLS (an event) and one PROT P data connection.
        f = ReusingFTP_TLS(context=client_tls, timeout=20)
        f.connect(*srv.address)
        f.auth()
        f.login("alice", "pw")
        f.prot_p()
        f.storbinary("STOR a.bin", io.BytesIO(b"a" * 1000))
        f.quit()
        until(lambda: tls_counts() == (2, 0), what="control and data handshakes counted")
        # Implicit FTPS: one good handshake, then clear text where a hello belongs.
        raw = socket.create_connection(implicit, timeout=20)
        with client_tls.wrap_socket(raw, server_hostname="localhost") as good:
            assert good.recv(4096).startswith(b"220")
        with socket.create_connection(implicit, timeout=20) as bad:
            bad.sendall(b"USER alice\r\n" * 20)
            heard = b""
            try:
                while chunk := bad.recv(4096):
                    heard += chunk
            except ConnectionResetError:
                pass
            assert b"220" not in heard  # refused at the handshake: no session began
        until(lambda: tls_counts() == (3, 1), what="implicit handshakes counted")
    assert (tmp_path / "a.bin").read_bytes() == b"a" * 1000
