"""POST an event to a URL hook: a small HTTP/1.1 client on asyncio streams.

Why not urllib or a library: urllib blocks (it would need a thread per
request), and one JSON POST with ``Connection: close`` needs only a request
line, a few headers and a status line back, so the stdlib's streams and
``ssl`` do it without a new dependency. https verifies the certificate and
the host name (the system's CAs, or the hook's ``ca_file``); there is no
switch to turn that off.

Every read is bounded: the status line and each header line by the stream
limit, the headers by count, the body by ``max_output``, and the whole
attempt by the hook's timeout. The response body is kept for the log (and
for a refused upload's reply), never more.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
import urllib.parse

from fileferry.config.hooks import HookConfig
from fileferry.observability.hooks.outcome import Outcome
from fileferry.observability.hooks.payload import first_line

_LINE_LIMIT = 8192
_MAX_HEADERS = 100
#: Statuses worth another attempt: the server was busy or timed out.
_TRANSIENT = frozenset({408, 425, 429, 500, 502, 503, 504})
#: How long the body may take once the status is in (it only feeds the log).
_BODY_WAIT = 2.0
#: A peer that went away or does not speak HTTP (IncompleteReadError is an EOFError).
_BROKEN = (OSError, EOFError, ValueError, asyncio.LimitOverrunError)


def make_context(hook: HookConfig) -> ssl.SSLContext | None:
    """The TLS context of an https hook (made once: loading CAs is not free)."""
    assert hook.url is not None
    if urllib.parse.urlsplit(hook.url).scheme != "https":
        return None
    return ssl.create_default_context(cafile=hook.ca_file)


def shown(url: str) -> str:
    """``url`` for the log: no user name, password or query (where tokens live)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path or '/'}"


def _request(hook: HookConfig, body: bytes) -> tuple[str, int, bytes]:
    assert hook.url is not None
    parts = urllib.parse.urlsplit(hook.url)
    https = parts.scheme == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if https else 80)
    authority = f"[{host}]" if ":" in host else host
    if parts.port and parts.port != (443 if https else 80):
        authority += f":{parts.port}"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [
        f"POST {target} HTTP/1.1",
        f"Host: {authority}",
        "User-Agent: fileferry",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        lines.append(f"Authorization: Basic {token}")
    lines.extend(f"{name}: {value}" for name, value in hook.headers)
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
    return host, port, head + body


async def post_event(hook: HookConfig, body: bytes, context: ssl.SSLContext | None) -> Outcome:
    """One attempt: 2xx is success; never raises but for cancellation."""
    host, port, request = _request(hook, body)
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(hook.timeout):
            reader, writer = await asyncio.open_connection(
                host,
                port,
                ssl=context,
                server_hostname=host if context is not None else None,
                limit=_LINE_LIMIT,
            )
            writer.write(request)
            await writer.drain()
            status, length = await _read_head(reader)
        output = await _read_body(reader, length, hook.max_output)
    except TimeoutError:
        return Outcome(
            False,
            retry=True,
            summary=f"no answer within {hook.timeout:g} s",
            message="the upload check did not finish in time",
        )
    except ssl.SSLError as exc:
        return Outcome(False, retry=False, summary=f"TLS failed: {exc.reason or exc}")
    except _BROKEN as exc:
        return Outcome(False, retry=True, summary=f"request failed: {exc or type(exc).__name__}")
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1):
                    await writer.wait_closed()
    if 200 <= status < 300:
        return Outcome(True, summary=f"HTTP {status}", output=output)
    return Outcome(
        False,
        retry=status in _TRANSIENT,
        summary=f"HTTP {status}",
        output=output,
        message=first_line(output),
    )


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, int | None]:
    """The status code and the Content-Length (if given) of the response."""
    line = await reader.readuntil(b"\n")
    parts = line.decode("latin-1").split(None, 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP response: {line[:40]!r}")
    status = int(parts[1])
    length: int | None = None
    for _ in range(_MAX_HEADERS):
        header = await reader.readuntil(b"\n")
        if header in (b"\r\n", b"\n"):
            return status, length
        name, _, value = header.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length" and value.strip().isdigit():
            length = int(value.strip())
    raise ValueError("too many response headers")


async def _read_body(reader: asyncio.StreamReader, length: int | None, cap: int) -> bytes:
    """Up to ``cap`` bytes of the body, best effort: the status already decided."""
    want = cap if length is None else min(cap, length)
    kept = bytearray()
    with contextlib.suppress(TimeoutError, OSError, asyncio.IncompleteReadError):
        async with asyncio.timeout(_BODY_WAIT):
            while len(kept) < want:
                chunk = await reader.read(want - len(kept))
                if not chunk:
                    break
                kept += chunk
    return bytes(kept)
