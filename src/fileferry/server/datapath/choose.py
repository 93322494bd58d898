"""Which way the bytes of one transfer go: the one place that decides.

Pure functions of what is known when the data connection is up: is it
cleartext (``DataConnection.zero_copy``) or TLS, ASCII or binary, throttled
or not, what the storage claims (:class:`~fileferry.storage.base.Capabilities`)
and which optional fast path (:mod:`fileferry.storage.fastpaths`) the reader
or upload in hand implements. No backend class is named: a wrapper that
hands back the inner object, or derives from a fast-path interface with its
own checks, keeps the fast path.

The rules, fastest first:

* **Downloads.** ``sendfile`` needs cleartext, binary and a file-backed
  reader (throttled: the same, a throttle step at a time). Under TLS a
  binary, unthrottled, file-backed download is encrypted by a pump thread,
  beside the loop; if no pump is free (or the rest is too small to gain)
  the runner falls back to the loop. Everything else is read and sent by
  the loop (ASCII conversion and pacing happen there).
* **Uploads.** ``splice`` needs cleartext, binary, unthrottled, a splicing
  upload and ``os.splice``. Failing that, a cleartext, binary, unthrottled
  upload that lends its buffer (an object store's part) is received
  straight into it. Under TLS a binary, unthrottled upload is
  decrypted by a pump, written from a writer thread when the upload is a
  ``BlockingWriter``, else through the loop's ``write``. Everything else
  is received by the loop.
"""

from __future__ import annotations

import enum
import os

from fileferry.storage.base import Capabilities, Reader, Upload
from fileferry.storage.fastpaths import BlockingWriter, FileBacked, ReceivesInto, SpliceTarget

#: ``splice(2)`` exists here (Linux); without it no upload is spliced.
CAN_SPLICE = hasattr(os, "splice")


class Download(enum.Enum):
    SENDFILE = "sendfile"
    #: ``sendfile`` in throttle-sized steps, paced before each.
    SENDFILE_PACED = "sendfile-paced"
    #: Encrypted by a pump thread; the loop path if none is free.
    TLS_PUMP = "tls-pump"
    LOOP = "loop"


class Receive(enum.Enum):
    SPLICE = "splice"
    #: Received by the loop straight into the upload's own buffer (``ReceivesInto``).
    INTO = "into"
    #: Decrypted by a pump thread, written by a writer thread (``BlockingWriter``).
    TLS_PUMP_DIRECT = "tls-pump-direct"
    #: Decrypted by a pump thread, written through the loop's ``Upload.write``.
    TLS_PUMP = "tls-pump"
    LOOP = "loop"


def download(
    reader: Reader, caps: Capabilities, *, plain: bool, ascii: bool, throttled: bool
) -> Download:
    """The route for sending ``reader`` (see the module docstring)."""
    if ascii or not caps.sendfile or not isinstance(reader, FileBacked):
        return Download.LOOP
    if plain:
        return Download.SENDFILE_PACED if throttled else Download.SENDFILE
    return Download.LOOP if throttled else Download.TLS_PUMP


def receive(
    upload: Upload, caps: Capabilities, *, plain: bool, ascii: bool, throttled: bool
) -> Receive:
    """The route for receiving into ``upload`` (see the module docstring)."""
    if ascii or throttled:
        return Receive.LOOP
    if plain:
        if CAN_SPLICE and caps.splice and isinstance(upload, SpliceTarget):
            return Receive.SPLICE
        if caps.receive_into and isinstance(upload, ReceivesInto):
            return Receive.INTO
        return Receive.LOOP
    if caps.blocking_writes and isinstance(upload, BlockingWriter):
        return Receive.TLS_PUMP_DIRECT
    return Receive.TLS_PUMP
