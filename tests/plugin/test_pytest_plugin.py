"""The pytest plugin, used as its users use it: test files run by ``pytester``.

Each inner test file talks to the fixture's server with a real client
(ftplib, plain and FTPS with a verified certificate) and checks bytes by
their SHA-256 and replies by their codes; the outer test reads the inner
run's outcome. The plugin is loaded through its ``pytest11`` entry point,
as in a user's project (nothing here names it).
"""

from __future__ import annotations

pytest_plugins = ("pytester",)


TEST_PLAIN = """
import ftplib, hashlib, io, os, pytest

BLOB = os.urandom(300_000)

def test_fields(ftp_server):
    assert ftp_server.host == "127.0.0.1" and ftp_server.port > 0
    assert ftp_server.url == f"ftp://127.0.0.1:{ftp_server.port}"
    assert ftp_server.root.is_dir() and ftp_server.user == "user" and ftp_server.password
    assert ftp_server.ca_file is None

def test_upload_lands_in_root_and_reads_back(ftp_server):
    with ftp_server.connect() as ftp:
        assert ftp.storbinary("STOR blob.bin", io.BytesIO(BLOB)).startswith("226")
        got = bytearray()
        ftp.retrbinary("RETR blob.bin", got.extend)
    on_disk = (ftp_server.root / "blob.bin").read_bytes()
    assert hashlib.sha256(on_disk).hexdigest() == hashlib.sha256(BLOB).hexdigest()
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(BLOB).hexdigest()

def test_anonymous_reads_but_may_not_write(ftp_server):
    (ftp_server.root / "pub.txt").write_bytes(b"public")
    with ftp_server.connect(anonymous=True) as ftp:
        got = bytearray()
        ftp.retrbinary("RETR pub.txt", got.extend)
        assert bytes(got) == b"public"
        with pytest.raises(ftplib.error_perm, match="^550"):
            ftp.storbinary("STOR x.txt", io.BytesIO(b"no"))

def test_wrong_password_is_530(ftp_server):
    with pytest.raises(ftplib.error_perm, match="^530"):
        ftp_server.connect(password="wrong")
"""

TEST_CONFIGURED = """
import ftplib, io, pytest

@pytest.mark.fileferry(storage="memory", anonymous=False,
                       users={"alice": {"password": "pw", "quota_bytes": "1000"}})
def test_memory_accounts_and_quota(ftp_server):
    assert ftp_server.root is None and ftp_server.storage is not None
    with ftp_server.connect("alice", "pw") as ftp:
        assert ftp.storbinary("STOR ok.bin", io.BytesIO(b"x" * 600)).startswith("226")
        with pytest.raises(ftplib.Error, match="^552"):
            ftp.storbinary("STOR big.bin", io.BytesIO(b"y" * 600))
        assert ftp.nlst() == ["ok.bin"]
    with pytest.raises(ftplib.error_perm, match="^530"):
        ftp_server.connect(anonymous=True)

@pytest.mark.parametrize("ftp_server", [{"anonymous_write": True, "user": "bob",
                                         "password": "secret1"}], indirect=True)
def test_parameters(ftp_server):
    assert (ftp_server.user, ftp_server.password) == ("bob", "secret1")
    with ftp_server.connect(anonymous=True) as ftp:
        assert ftp.storbinary("STOR anon.txt", io.BytesIO(b"a")).startswith("226")
    assert (ftp_server.root / "anon.txt").read_bytes() == b"a"

@pytest.mark.fileferry(settings={"banner": "hello from the marker"})
@pytest.mark.parametrize("ftp_server", [{"settings": {"banner": "param wins"}}], indirect=True)
def test_parameter_beats_marker(ftp_server):
    ftp = ftplib.FTP()
    assert "param wins" in ftp.connect(ftp_server.host, ftp_server.port)
    ftp.close()
"""

TEST_FTPS = """
import ftplib, hashlib, io, os, socket, ssl, pytest

def test_protected_transfer_with_the_test_ca(ftps_server):
    assert ftps_server.ca_file.is_file() and ftps_server.tls
    blob = os.urandom(200_000)
    with ftps_server.connect() as ftp:
        assert isinstance(ftp.sock, ssl.SSLSocket)
        ftp.storbinary("STOR s.bin", io.BytesIO(blob))
        got = bytearray()
        ftp.retrbinary("RETR s.bin", got.extend)
    assert hashlib.sha256(got).digest() == hashlib.sha256(blob).digest()

def test_a_client_without_session_reuse_is_refused(ftps_server):
    ftp = ftplib.FTP_TLS(context=ftps_server.ssl_context(), timeout=10)
    ftp.connect(ftps_server.host, ftps_server.port)
    ftp.login(ftps_server.user, ftps_server.password)
    ftp.prot_p()
    with pytest.raises((ftplib.Error, OSError)):
        ftp.nlst()
    ftp.close()

def test_the_system_cas_do_not_trust_it(ftps_server):
    ftp = ftplib.FTP_TLS(context=ssl.create_default_context(), timeout=10)
    ftp.connect(ftps_server.host, ftps_server.port)
    with pytest.raises(ssl.SSLCertVerificationError):
        ftp.auth()
    ftp.close()

@pytest.mark.fileferry(implicit=True)
def test_implicit(ftps_server):
    ctx = ftps_server.ssl_context()
    with socket.create_connection((ftps_server.host, ftps_server.implicit_port), 10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.recv(100).startswith(b"220")
"""

TEST_BAD = """
import pytest

@pytest.mark.fileferry(storage="s3")
def test_bad_storage(ftp_server):
    pass

@pytest.mark.fileferry(colour="blue")
def test_unknown(ftp_server):
    pass
"""


def test_the_fixtures_in_a_project_of_their_own(pytester):
    """One inner run (a pytest start costs seconds): every inner test's verdict is read."""
    pytester.makepyfile(
        test_plain=TEST_PLAIN,
        test_configured=TEST_CONFIGURED,
        test_ftps=TEST_FTPS,
        test_bad=TEST_BAD,
    )
    result = pytester.runpytest_subprocess("-v", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines_random(
        [
            "*test_plain.py::test_fields PASSED*",
            "*test_plain.py::test_upload_lands_in_root_and_reads_back PASSED*",
            "*test_plain.py::test_anonymous_reads_but_may_not_write PASSED*",
            "*test_plain.py::test_wrong_password_is_530 PASSED*",
            "*test_configured.py::test_memory_accounts_and_quota PASSED*",
            "*test_configured.py::test_parameters?ftp_server0? PASSED*",
            "*test_configured.py::test_parameter_beats_marker?ftp_server0? PASSED*",
            "*test_ftps.py::test_protected_transfer_with_the_test_ca PASSED*",
            "*test_ftps.py::test_a_client_without_session_reuse_is_refused PASSED*",
            "*test_ftps.py::test_the_system_cas_do_not_trust_it PASSED*",
            "*test_ftps.py::test_implicit PASSED*",
            "*test_bad.py::test_bad_storage ERROR*",
            "*test_bad.py::test_unknown ERROR*",
            "*storage: 'tmp_path' or 'memory'*",
            "*unknown fileferry option 'colour'*",
        ]
    )
    result.assert_outcomes(passed=11, errors=2)
