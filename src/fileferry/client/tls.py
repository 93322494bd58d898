"""TLS for the client: one context per client whose data connections resume the
control connection's session.

Servers such as vsftpd (``require_ssl_reuse``) and fileferry take a data
connection that resumes the control connection's TLS session as proof that
it comes from the client that logged in, so every data connection must
offer that session. Kept apart from the connection logic: it is all about
``ssl``, nothing about FTP.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

from fileferry.client.errors import ClientError, ConnectionFailed


class ResumingContext(ssl.SSLContext):
    """A client context whose connections resume the session ``session_source`` gives.

    asyncio has no parameter for TLS session reuse, but every TLS connection
    it makes is created through ``wrap_bio``, so that is where the session
    goes in.
    """

    session_source: Callable[[], ssl.SSLSession | None] | None = None

    def wrap_bio(  # type: ignore[override]
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        if session is None and self.session_source is not None:
            session = self.session_source()
        return super().wrap_bio(incoming, outgoing, server_side, server_hostname, session)


def make_tls_context(ca_file: str | None, insecure: bool) -> ResumingContext:
    ctx = ResumingContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif ca_file:
        try:
            ctx.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ClientError(f"cannot load CA file {ca_file}: {exc}") from None
    else:
        ctx.load_default_certs()
    return ctx


def tls_failure(host: str, exc: BaseException) -> ConnectionFailed:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ConnectionFailed(
            f"TLS certificate of {host} not trusted ({exc.verify_message});"
            " use --ca-file to trust its CA, or --insecure"
        )
    return ConnectionFailed(f"TLS with {host} failed: {exc}")
