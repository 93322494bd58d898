"""One FTP control connection and the data connections it opens.

RFC 959 replies and logins, RFC 2428 EPSV/EPRT (falling back to PASV/PORT
for old servers), and RFC 4217 explicit TLS: ``AUTH TLS`` upgrades the
control connection, ``PBSZ 0`` and ``PROT P`` protect data, and every data
connection resumes the control connection's TLS session, which is how
servers such as vsftpd (``require_ssl_reuse``) and fileferry know that a
data connection comes from the client that logged in.

The passive address a server announces is ignored in favour of the control
connection's peer (curl does the same): a server behind NAT often announces
an address nobody can reach, and following it blindly lets a hostile server
point the client at a third host. In active mode the one connection taken
is the one from that peer (RFC 2577), compared as addresses, not as text.

Reading and writing the protocol's text is :mod:`fileferry.protocol`'s job
(replies, addresses, FEAT); this module owns the sockets, the timeouts and
what a failure means for the connection.

Every wait has a timeout, and a connection that fails half-way through an
exchange is marked ``broken`` so that nobody sends it another command.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass

from fileferry.client.datastream import DATA_LIMIT, DataStream
from fileferry.client.errors import (
    ClientError,
    ConnectionFailed,
    LoginRefused,
    ProtocolFailure,
    RemoteError,
)
from fileferry.client.tls import ResumingContext, make_tls_context, tls_failure
from fileferry.client.urls import FTPURL, Credentials
from fileferry.protocol import addresses
from fileferry.protocol.features import Features
from fileferry.protocol.replies import Reply
from fileferry.protocol.replyparser import ReplyError, ReplyParser

#: A goodbye is polite, not worth waiting long for.
_QUIT_TIMEOUT = 5.0
#: One read on the control connection: replies are small, but a listing over
#: STAT or a long HELP should not take a read per line.
_CONTROL_READ = 64 * 1024


@dataclass(frozen=True, slots=True)
class Options:
    """How to connect; the same for every connection of one client."""

    timeout: float = 30.0
    active: bool = False
    ca_file: str | None = None
    insecure: bool = False


def raise_for(reply: Reply, what: str) -> None:
    """Turn a negative reply into the error whose exit status fits it."""
    if reply.is_positive:
        return
    if reply.code == 421:
        raise ConnectionFailed(f"{what}: server closed the connection ({reply})")
    if reply.code == 530:
        raise LoginRefused(f"{what}: {reply}")
    if reply.code in (425, 426):
        raise ConnectionFailed(f"{what}: data connection failed ({reply})")
    raise RemoteError(f"{what}: {reply}", reply.code)


#: Commands whose data goes to the server: their final reply may come early.
_SENDING = frozenset({"STOR", "APPE", "STOU"})


def _raise_ended_early(final: Reply, command: str) -> None:
    """An upload broke off after the server answered: say what the server said."""
    if final.code in (425, 426):
        return  # the break itself, as the server saw it: nothing to add
    raise_for(final, command)
    raise ConnectionFailed(f"{command}: the server ended the transfer before the end ({final})")


def _failure(ending: asyncio.Task[Reply]) -> BaseException | None:
    """How the watcher of an upload failed, if it is over and did (asking marks
    its error as seen, so none is reported as lost when the task is dropped)."""
    if not ending.done():
        return None
    if ending.cancelled():
        return asyncio.CancelledError()
    return ending.exception()


class Connection:
    """A logged-in control connection; ``broken`` once it cannot be trusted any more."""

    def __init__(self, url: FTPURL, credentials: Credentials, options: Options) -> None:
        self.url = url
        self.credentials = credentials
        self.options = options
        self.offered = Features()
        self.broken = False
        self._parser = ReplyParser()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._tls: ResumingContext | None = None
        self._peer_host = url.host
        self._no_epsv = False
        self._no_eprt = False

    # --- opening ----------------------------------------------------------------

    async def open(self) -> None:
        url, timeout = self.url, self.options.timeout
        try:
            async with asyncio.timeout(timeout):
                self._reader, self._writer = await asyncio.open_connection(url.host, url.port)
        except socket.gaierror:
            raise ConnectionFailed(f"unknown host {url.host}") from None
        except TimeoutError:
            raise ConnectionFailed(f"timed out connecting to {url.host}:{url.port}") from None
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise ConnectionFailed(f"cannot connect to {url.host}:{url.port}: {reason}") from None
        sock = self._writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._peer_host = self._writer.get_extra_info("peername")[0]
        welcome = await self.reply()
        if welcome.code != 220:
            raise ConnectionFailed(f"server at {url.host} refused the session: {welcome}")
        if url.tls:
            await self._start_tls()
        await self._login()
        self.offered = Features.from_reply(await self.command("FEAT"))
        raise_for(await self.command("TYPE I"), "TYPE I")
        if self.has("UTF8"):
            await self.command("OPTS UTF8 ON")

    async def _start_tls(self) -> None:
        assert self._writer is not None
        reply = await self.command("AUTH TLS")
        if reply.code != 234:
            raise ConnectionFailed(f"{self.url.host} does not offer TLS (AUTH TLS: {reply})")
        self._tls = make_tls_context(self.options.ca_file, self.options.insecure)
        try:
            async with asyncio.timeout(self.options.timeout):
                await self._writer.start_tls(self._tls, server_hostname=self.url.host)
        except (ssl.SSLError, OSError, TimeoutError) as exc:
            self.broken = True
            raise tls_failure(self.url.host, exc) from None
        control: ssl.SSLObject = self._writer.get_extra_info("ssl_object")
        self._tls.session_source = lambda: control.session
        for line in ("PBSZ 0", "PROT P"):
            reply = await self.command(line)
            if reply.code != 200:
                raise ConnectionFailed(f"{self.url.host} refused {line}: {reply}")

    async def _login(self) -> None:
        who = f"{self.credentials.user}@{self.url.host}"
        reply = await self.command(f"USER {self.credentials.user}")
        if reply.code in (331, 332):
            reply = await self.command(f"PASS {self.credentials.password}")
        if reply.code not in (230, 202):
            raise LoginRefused(f"login as {who} refused: {reply}")

    # --- commands and replies ---------------------------------------------------

    @property
    def features(self) -> tuple[str, ...]:
        """The server's FEAT lines."""
        return self.offered.lines

    def has(self, feature: str) -> bool:
        """FEAT named ``feature`` (its first word, case-insensitive)."""
        return self.offered.has(feature)

    def feature(self, name: str) -> str | None:
        """The argument of a FEAT line (``HASH SHA-256*;MD5`` → ``SHA-256*;MD5``)."""
        return self.offered.argument(name)

    async def send(self, line: str) -> None:
        if self.broken or self._writer is None:
            raise ConnectionFailed("connection is no longer usable")
        if "\r" in line or "\n" in line:
            raise ClientError("a name with a line break cannot be sent over FTP")
        self._writer.write(line.encode("utf-8", "surrogateescape") + b"\r\n")
        try:
            async with asyncio.timeout(self.options.timeout):
                await self._writer.drain()
        except (OSError, TimeoutError) as exc:
            self.broken = True
            raise ConnectionFailed(f"lost the connection to {self.url.host}: {exc}") from None

    async def _receive(self, timeout: float | None) -> bytes:
        """The next bytes of the control connection; ``timeout`` None waits as long as
        it takes (only while an upload runs, whose own waits are bounded)."""
        assert self._reader is not None
        try:
            async with asyncio.timeout(timeout):
                data = await self._reader.read(_CONTROL_READ)
        except TimeoutError:
            self.broken = True
            raise ConnectionFailed(f"{self.url.host} did not answer in time") from None
        except (OSError, ssl.SSLError) as exc:
            self.broken = True
            raise ConnectionFailed(f"lost the connection to {self.url.host}: {exc}") from None
        if not data:
            self.broken = True
            raise ConnectionFailed(f"{self.url.host} closed the connection")
        return data

    async def reply(self, timeout: float | None = None) -> Reply:
        """Read one (possibly multi-line) reply; ``timeout`` overrides the usual wait
        for each read (a HASH of a big file may take minutes)."""
        return await self._read_reply(timeout or self.options.timeout)

    async def _read_reply(self, timeout: float | None) -> Reply:
        while (reply := self._parser.next_reply()) is None:
            data = await self._receive(timeout)
            try:
                self._parser.feed(data)
            except ReplyError as exc:
                self.broken = True
                raise ProtocolFailure(
                    f"{self.url.host} sent something that is not FTP: {exc}"
                ) from None
        return reply

    async def command(self, line: str, timeout: float | None = None) -> Reply:
        await self.send(line)
        return await self.reply(timeout)

    async def close(self) -> None:
        """QUIT politely when possible; always release the socket."""
        if self._writer is None:
            return
        if not self.broken:
            with contextlib.suppress(ClientError, OSError, TimeoutError):
                async with asyncio.timeout(_QUIT_TIMEOUT):
                    await self.command("QUIT")
        writer, self._writer = self._writer, None
        self.broken = True
        writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await writer.wait_closed()

    # --- data connections -------------------------------------------------------

    async def _passive(self) -> tuple[str, int]:
        """Where to connect for a passive transfer: always the control peer, at the
        port the server names (its 227 address is checked for form, not followed)."""
        if not self._no_epsv:
            reply = await self.command("EPSV")
            if reply.code == 229:
                with contextlib.suppress(addresses.AddressError):
                    return self._peer_host, addresses.parse_epsv_reply(" ".join(reply.all_lines))
            elif reply.code not in (500, 501, 502):
                raise_for(reply, "EPSV")
            self._no_epsv = True
        reply = await self.command("PASV")
        raise_for(reply, "PASV")
        try:
            if reply.code != 227:
                raise addresses.AddressError(f"PASV answered {reply.code}")
            announced = addresses.parse_pasv_reply(" ".join(reply.all_lines))
        except addresses.AddressError as exc:
            raise ProtocolFailure(f"cannot understand the PASV reply {reply}: {exc}") from None
        return self._peer_host, announced.port

    async def _connect_passive(self) -> DataStream:
        host, port = await self._passive()
        try:
            async with asyncio.timeout(self.options.timeout):
                reader, writer = await asyncio.open_connection(host, port, limit=DATA_LIMIT)
        except (OSError, TimeoutError) as exc:
            raise ConnectionFailed(
                f"cannot open a data connection to {host}:{port}: {exc}"
            ) from None
        return DataStream(reader, writer, self.options.timeout)

    async def _listen_active(self) -> socket.socket:
        assert self._writer is not None
        local = self._writer.get_extra_info("sockname")
        family = socket.AF_INET6 if len(local) == 4 else socket.AF_INET
        # PORT can carry an IPv4 address, also one an IPv6 socket shows mapped.
        v4 = isinstance(addresses.parse_host(local[0]), ipaddress.IPv4Address)
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.bind((local[0], 0, *local[2:]))
            sock.listen(1)
            sock.setblocking(False)
            port = sock.getsockname()[1]
            reply = None
            if not self._no_eprt:
                reply = await self.command(f"EPRT {addresses.format_eprt(local[0], port)}")
                if reply.code in (500, 501, 502) and v4:
                    self._no_eprt, reply = True, None
            if reply is None:
                reply = await self.command(f"PORT {addresses.format_port(local[0], port)}")
            raise_for(reply, "active mode (PORT/EPRT)")
        except BaseException:
            sock.close()
            raise
        return sock

    async def _accept_active(self, sock: socket.socket) -> DataStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.options.timeout):
                while True:
                    conn, addr = await loop.sock_accept(sock)
                    if addresses.same_address(addr[0], self._peer_host):
                        break
                    conn.close()  # not the server: RFC 2577 says refuse it
        except TimeoutError:
            raise ConnectionFailed("the server never opened the active data connection") from None
        finally:
            sock.close()
        # Not start_server: a stream it creates would do TLS as the *server* side.
        reader, writer = await asyncio.open_connection(sock=conn, limit=DATA_LIMIT)
        return DataStream(reader, writer, self.options.timeout)

    @contextlib.asynccontextmanager
    async def transfer(self, command: str, offset: int = 0) -> AsyncIterator[DataStream]:
        """Run ``command`` with a data connection; the final reply is checked on exit.

        ``offset`` sends REST first (a ``RemoteError`` if the server refuses it).

        While an upload is sent, the control connection is watched: a server
        that refuses half-way (quota, full disk) answers at once and stops
        reading, and waiting for the data connection to drain would then last
        until the timeout. Its reply ends the upload there and is the error.
        """
        stream: DataStream | None = None
        listener: socket.socket | None = None
        ending: asyncio.Task[Reply] | None = None
        started = False
        try:
            if self.options.active:
                listener = await self._listen_active()
            else:
                stream = await self._connect_passive()
            if offset:
                raise_for(await self.command(f"REST {offset}"), f"restart at {offset}")
            reply = await self.command(command)
            if reply.code not in (125, 150):
                raise_for(reply, command)
                raise ProtocolFailure(f"{command} answered {reply} without data")
            started = True
            if listener is not None:
                stream, listener = await self._accept_active(listener), None
            assert stream is not None
            if self._tls is not None:
                try:
                    async with asyncio.timeout(self.options.timeout):
                        await stream.writer.start_tls(self._tls, server_hostname=self.url.host)
                except (ssl.SSLError, OSError, TimeoutError) as exc:
                    raise tls_failure(self.url.host, exc) from None
            if command.partition(" ")[0].upper() in _SENDING:
                ending = asyncio.create_task(self._read_reply(None))
                ending.add_done_callback(stream.cut)
            yield stream
            await stream.finish()
            final = await self._final_reply(ending)
        except ClientError as exc:
            final = await self._settle(stream, listener, started, ending)
            if ending is not None and isinstance(exc, ConnectionFailed):
                # The server's reason beats the broken pipe it caused.
                if final is not None:
                    _raise_ended_early(final, command)
                if isinstance(lost := _failure(ending), ClientError):
                    raise lost from None
            raise
        except BaseException:
            # Cancelled or a local failure: the server's final reply may never be
            # read in order, so the connection is no longer trusted.
            if ending is not None:
                ending.cancel()
                _failure(ending)
            if stream is not None:
                stream.writer.transport.abort()
            if listener is not None:
                listener.close()
            self.broken = True
            raise
        if stream.stopped_early and final.code in (426, 450, 451, 550, 551):
            return
        raise_for(final, command)

    async def _final_reply(self, ending: asyncio.Task[Reply] | None) -> Reply:
        """The reply that ends a transfer, read once (by the watcher of an upload)."""
        if ending is None:
            return await self.reply()
        try:
            async with asyncio.timeout(self.options.timeout):
                return await ending
        except TimeoutError:
            self.broken = True
            raise ConnectionFailed(f"{self.url.host} did not answer in time") from None

    async def _settle(
        self,
        stream: DataStream | None,
        listener: socket.socket | None,
        started: bool,
        ending: asyncio.Task[Reply] | None,
    ) -> Reply | None:
        """After a failure, drop the data connection and read the reply that ends it
        (unless it was read already: reading for a second one would wait in vain)."""
        if listener is not None:
            listener.close()
        if stream is not None:
            stream.writer.transport.abort()
        if ending is not None and ending.done():
            return None if _failure(ending) is not None else ending.result()
        if not started or self.broken:
            if ending is not None:
                ending.cancel()
            return None
        try:
            return await self._final_reply(ending)
        except ClientError:
            self.broken = True
            return None

    async def read_lines(self, command: str, limit: int = 256 << 20) -> list[str]:
        """A listing: the data connection's text, split into lines."""
        chunks: list[bytes] = []
        total = 0
        async with self.transfer(command) as stream:
            while chunk := await stream.read():
                total += len(chunk)
                if total > limit:
                    raise ProtocolFailure(f"listing larger than {limit} bytes")
                chunks.append(chunk)
        text = b"".join(chunks).decode("utf-8", "surrogateescape")
        return [line for line in text.splitlines() if line]
