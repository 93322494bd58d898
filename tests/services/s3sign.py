"""Signed S3 requests with the standard library, for what the backend's client does not offer.

The tests must check the store's own list of pending multipart uploads
(``ListMultipartUploads``) and create buckets; obstore has neither call, and
pulling in a second S3 client for two requests would be heavier than this
AWS Signature Version 4 implementation (RFC-like spec: "Signature Version 4
signing process" in the AWS docs).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from typing import Any

_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def _quote(text: str, safe: str = "-_.~") -> str:
    return urllib.parse.quote(text, safe=safe)


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def signed_request(
    endpoint: str,
    method: str,
    path: str,
    query: dict[str, str],
    body: bytes,
    access_key: str,
    secret_key: str,
    region: str,
    timeout: float = 10.0,
) -> tuple[int, bytes]:
    """Send one path-style request signed with SigV4; return (status, body)."""
    url = urllib.parse.urlsplit(endpoint)
    now = datetime.datetime.now(datetime.UTC)
    stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    payload = hashlib.sha256(body).hexdigest()
    canonical_path = _quote(path, safe="/-_.~")
    canonical_query = "&".join(f"{_quote(k)}={_quote(v)}" for k, v in sorted(query.items()))
    headers = {"host": url.netloc, "x-amz-content-sha256": payload, "x-amz-date": stamp}
    signed = ";".join(sorted(headers))
    canonical = "\n".join(
        [
            method,
            canonical_path,
            canonical_query,
            "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)),
            signed,
            payload,
        ]
    )
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = _hmac(
        _hmac(_hmac(_hmac(f"AWS4{secret_key}".encode(), day), region), "s3"), "aws4_request"
    )
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
        f"SignedHeaders={signed}, Signature={signature}"
    )
    full = f"{url.scheme}://{url.netloc}{canonical_path}"
    if canonical_query:
        full += "?" + canonical_query
    request = urllib.request.Request(full, data=body or None, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def list_multipart_uploads(server: Any, bucket: str, prefix: str) -> list[str]:
    """Keys of every pending multipart upload under ``prefix`` (all pages)."""
    keys: list[str] = []
    query = {"uploads": "", "prefix": prefix}
    while True:
        status, body = server.request("GET", f"/{bucket}", query)
        if status != 200:
            raise RuntimeError(f"ListMultipartUploads: HTTP {status} {body[:300]!r}")
        root = ET.fromstring(body)
        keys += [u.findtext(f"{_NS}Key") or "" for u in root.iter(f"{_NS}Upload")]
        if root.findtext(f"{_NS}IsTruncated") != "true":
            return keys
        query = {
            "uploads": "",
            "prefix": prefix,
            "key-marker": root.findtext(f"{_NS}NextKeyMarker") or "",
            "upload-id-marker": root.findtext(f"{_NS}NextUploadIdMarker") or "",
        }


def list_keys(server: Any, prefix: str, bucket: str | None = None) -> list[str]:
    """Every key under ``prefix`` as the store lists it (ListObjectsV2, all pages)."""
    keys: list[str] = []
    query = {"list-type": "2", "prefix": prefix}
    while True:
        status, body = server.request("GET", f"/{bucket or server.bucket}", query)
        if status != 200:
            raise RuntimeError(f"ListObjectsV2: HTTP {status} {body[:300]!r}")
        root = ET.fromstring(body)
        keys += [c.findtext(f"{_NS}Key") or "" for c in root.iter(f"{_NS}Contents")]
        token = root.findtext(f"{_NS}NextContinuationToken")
        if root.findtext(f"{_NS}IsTruncated") != "true" or not token:
            return keys
        query = {"list-type": "2", "prefix": prefix, "continuation-token": token}
