"""The few S3 calls obstore does not make, as signed requests of our own.

obstore (object_store underneath) is the data path: streamed GETs,
multipart PUTs, copies, deletes. Folder listings are ours too
(``storage/s3listing.py``): obstore neither tells a ``dir/`` marker from a
file nor lets the page size be chosen. It has no way to name a key that
ends in ``/`` (its paths drop the trailing delimiter), so it cannot create
or delete the ``dir/`` marker of an empty folder; it cannot replace an
object's metadata in place (MFMT) or set tags after an upload (the SHA-256
of a multipart upload is known only at its end); and it cannot list or
abort pending multipart uploads (the sweep after a crash). Those calls are
rare and small, so they go through the standard library here: AWS
Signature Version 4 over ``http.client`` with kept-alive connections (no
TLS handshake per request), in a worker thread. Secrets are used to sign
and never appear in an error text.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime
import hashlib
import hmac
import http.client
import threading
import urllib.parse
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
#: Bytes of an answer's body read at most (errors, tag sets, upload listings pages).
MAX_BODY = 4 << 20


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def error_code(self) -> str:
        """The S3 error code of an error answer (``NoSuchKey``, ``SlowDown``), or ``""``."""
        try:
            return ET.fromstring(self.body).findtext("Code") or ""
        except ET.ParseError:
            return ""


def _quote(text: str, safe: str = "-_.~") -> str:
    return urllib.parse.quote(text, safe=safe)


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


class SignedClient:
    """Path-style, SigV4-signed requests to one endpoint (``http(s)://host[:port]``)."""

    def __init__(
        self, endpoint: str, region: str, credentials: Credentials | None, timeout: float = 30.0
    ) -> None:
        self._endpoint = urllib.parse.urlsplit(endpoint.rstrip("/"))
        self._region = region
        self._credentials = credentials
        self._timeout = timeout
        #: Kept-alive connections not in use (list pop/append are atomic across threads).
        self._idle: list[http.client.HTTPConnection] = []
        #: Bumped by :meth:`close`: a connection made before it, still busy in a
        #: thread then, is closed when its request ends instead of kept alive.
        self._generation = 0

    def _headers(
        self, method: str, path: str, query: str, body: bytes, extra: dict[str, str]
    ) -> dict[str, str]:
        now = datetime.datetime.now(datetime.UTC)
        stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        payload = hashlib.sha256(body).hexdigest()
        headers = {
            "host": self._endpoint.netloc,
            "x-amz-content-sha256": payload,
            "x-amz-date": stamp,
            **{k.lower(): v.strip() for k, v in extra.items()},
        }
        creds = self._credentials
        if creds is None:
            return headers
        if creds.session_token:
            headers["x-amz-security-token"] = creds.session_token
        signed = ";".join(sorted(headers))
        canonical = "\n".join(
            [
                method,
                path,
                query,
                "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)),
                signed,
                payload,
            ]
        )
        scope = f"{day}/{self._region}/s3/aws4_request"
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        key = _hmac(f"AWS4{creds.secret_access_key}".encode(), day)
        key = _hmac(_hmac(_hmac(key, self._region), "s3"), "aws4_request")
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={creds.access_key_id}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}"
        )
        return headers

    def request_blocking(
        self,
        method: str,
        bucket: str,
        key: str = "",
        query: dict[str, str] | None = None,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> Answer:
        """One request; network failures raise ``OSError``, HTTP errors are answers."""
        path = _quote(f"/{bucket}/{key}" if key else f"/{bucket}", safe="/-_.~")
        canonical_query = "&".join(
            f"{_quote(k)}={_quote(v)}" for k, v in sorted((query or {}).items())
        )
        signed = self._headers(method, path, canonical_query, body, headers or {})
        target = path + ("?" + canonical_query if canonical_query else "")
        for attempt in (1, 2):
            generation = self._generation
            # The second try never takes another idle connection: when the store
            # dropped one kept-alive connection it has usually dropped them all.
            conn = self._connection(fresh=attempt == 2)
            try:
                conn.request(method, target, body=body or None, headers=signed)
                response = conn.getresponse()
                data = response.read(MAX_BODY)
                answer = Answer(response.status, dict(response.headers), data)
                if response.will_close or not response.isclosed():
                    conn.close()  # unread rest, or the server will close: not reusable
                elif generation != self._generation:
                    conn.close()  # the client was closed meanwhile: keep nothing open
                else:
                    self._idle.append(conn)
                return answer
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                conn.close()
                if attempt == 2:
                    raise ConnectionError("Connection closed by the object store") from None
                # A kept-alive connection the server had closed: once more on a new one.
            except http.client.HTTPException as exc:
                conn.close()
                raise OSError(f"bad answer from the object store ({type(exc).__name__})") from None
            except BaseException:
                conn.close()
                raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close the kept-alive connections (the client stays usable: it opens new ones)."""
        self._generation += 1
        while self._idle:
            with contextlib.suppress(IndexError):
                self._idle.pop().close()

    def _connection(self, *, fresh: bool = False) -> http.client.HTTPConnection:
        """An idle kept-alive connection (no TLS handshake per request), or a new one."""
        if not fresh:
            with contextlib.suppress(IndexError):
                return self._idle.pop()
        host, port = self._endpoint.hostname or "", self._endpoint.port
        if self._endpoint.scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=self._timeout)
        return http.client.HTTPConnection(host, port, timeout=self._timeout)

    async def request(
        self,
        method: str,
        bucket: str,
        key: str = "",
        query: dict[str, str] | None = None,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> Answer:
        return await asyncio.get_running_loop().run_in_executor(
            _request_pool(), self.request_blocking, method, bucket, key, query, body, headers
        )


#: Threads waiting on signed requests at once, for every client of the process.
REQUEST_THREADS = 32


class SharedPool:
    """A thread pool made on first use and shared by the whole process, for one purpose.

    Made lazily so that a server that never touches S3 starts no threads;
    one per purpose so that waiting and working never queue behind each
    other (see the pools below and ``s3io``'s hashing pool).
    """

    def __init__(self, threads: int, name: str) -> None:
        self._threads = threads
        self._name = name
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def __call__(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    self._threads, thread_name_prefix=self._name
                )
            return self._pool


#: The threads that wait on the store for signed requests, apart from the loop's pool.
#: A signed request is waiting, not work: HEAD before a transfer, folder checks,
#: tagging after an upload. The loop's default pool has ``cores + 4`` threads (6
#: here), so 300 uploads queued their metadata requests behind six slow answers
#: from a busy store and the data connections stalled for no CPU reason. A pool
#: of their own, sized for waiting, keeps them moving and leaves the default
#: pool to local-disk calls.
_request_pool = SharedPool(REQUEST_THREADS, "fileferry-s3-request")


def tagging_body(tags: dict[str, str]) -> bytes:
    root = ET.Element("Tagging")
    tag_set = ET.SubElement(root, "TagSet")
    for k, v in tags.items():
        tag = ET.SubElement(tag_set, "Tag")
        ET.SubElement(tag, "Key").text = k
        ET.SubElement(tag, "Value").text = v
    return ET.tostring(root)


def parse_tags(body: bytes) -> dict[str, str]:
    root = ET.fromstring(body)
    out: dict[str, str] = {}
    for tag in root.iter(f"{_NS}Tag"):
        out[tag.findtext(f"{_NS}Key") or ""] = tag.findtext(f"{_NS}Value") or ""
    for tag in root.iter("Tag"):  # stores that answer without the namespace
        out[tag.findtext("Key") or ""] = tag.findtext("Value") or ""
    return out


@dataclass(frozen=True, slots=True)
class PendingUpload:
    key: str
    upload_id: str
    initiated: float


def parse_uploads(body: bytes) -> tuple[list[PendingUpload], dict[str, str] | None]:
    """One page of ``ListMultipartUploads``: the uploads, and the next page's markers."""
    root = ET.fromstring(body)
    found = []
    for u in root.iter(f"{_NS}Upload"):
        when = u.findtext(f"{_NS}Initiated") or ""
        try:
            initiated = datetime.datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp()
        except ValueError:
            initiated = 0.0
        found.append(
            PendingUpload(
                u.findtext(f"{_NS}Key") or "", u.findtext(f"{_NS}UploadId") or "", initiated
            )
        )
    if root.findtext(f"{_NS}IsTruncated") != "true":
        return found, None
    return found, {
        "key-marker": root.findtext(f"{_NS}NextKeyMarker") or "",
        "upload-id-marker": root.findtext(f"{_NS}NextUploadIdMarker") or "",
    }
