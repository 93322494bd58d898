"""Optional fast paths a backend's readers and uploads may offer.

The core interface (:mod:`fileferry.storage.base`) is shaped for object
stores: ``read``, ``write``, ``commit``. A backend whose bytes sit in a local
file can do better: hand a descriptor to ``sendfile``, let the kernel
``splice`` an upload into its file, or take writes straight from the thread
that decrypted them. Those abilities are the interfaces below, which a
reader or upload class *inherits* to say it has them; a backend without
them (memory) simply does not, and the server moves the bytes through
``read``/``write`` instead. An object store's upload cannot take a
descriptor, but it can lend the buffer its next part is gathered in, so a
cleartext upload is received straight into it (:class:`ReceivesInto`).

Why nominal ABCs and not ``typing.Protocol`` with ``runtime_checkable``:
the server asks "is this reader file-backed?" on every transfer, and a
runtime protocol check looks up each member, which shows on a stream of
4 KiB files; an ``isinstance`` against an ABC the class derives from is a
cached subclass lookup (figures in ``bench/notes.md``).

A wrapper (mounts, the quota wrapper) keeps a fast path by returning the
inner object itself (mounts, reads under a quota) or by deriving from the
interface and adding its own checks (quota-tracked splicing). The server
asks in one place, :mod:`fileferry.server.datapath`; a backend states what
it offers in :class:`~fileferry.storage.base.Capabilities` too, and the
storage contract suite checks that the two agree.
"""

from __future__ import annotations

import abc


class FileBacked(abc.ABC):
    """A reader over a local file descriptor: ``sendfile`` and ``pread`` from a thread.

    ``position`` is where the next byte to send is; a server that moved
    bytes with ``sendfile`` advances it itself, so a later ``read`` goes on
    from there.
    """

    #: The offset of the next byte to transfer.
    position: int

    @abc.abstractmethod
    def fileno(self) -> int | None:
        """A descriptor positioned at ``position``, or ``None`` once closed."""


class SpliceTarget(abc.ABC):
    """An upload the kernel can fill from a pipe (``splice(2)``), bytes never in Python."""

    @abc.abstractmethod
    async def splice_from(self, pipe: int, n: int) -> None:
        """Append the ``n`` bytes waiting in the pipe read end ``pipe``, on the loop.

        Raises ``StorageError`` (the upload must then be aborted, not committed).
        """


class BlockingWriter(abc.ABC):
    """An upload that a worker thread may write synchronously (the TLS pump's writer).

    The caller guarantees that nothing else uses the upload while a
    ``write_blocking`` runs (no ``write``, ``commit`` or ``abort`` in
    between) and that no earlier ``write`` is still in progress.
    """

    @abc.abstractmethod
    def write_blocking(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data`` from the calling (non-loop) thread; raises ``StorageError``."""


class ReceivesInto(abc.ABC):
    """An upload that lends the data path its own buffer to receive into.

    An object store's upload gathers each part in memory before sending it.
    Through ``write``, every byte is received into the data path's buffer and
    then copied into the part; received straight into the part, it is copied
    once, by the kernel, and a whole part takes a few large ``recv_into``
    calls instead of one ``write`` per socket read. The caller alternates
    the two calls: ``receive_buffer``, then ``received`` with what landed.
    """

    @abc.abstractmethod
    def receive_buffer(self) -> memoryview:
        """Where the next bytes go: writable, never empty.

        Valid until the next ``received``, ``write``, ``commit`` or
        ``abort``; the caller writes into no other part of it.
        """

    @abc.abstractmethod
    async def received(self, n: int) -> None:
        """Accept the ``n`` bytes now at the start of the last ``receive_buffer``.

        Like ``write``: raises ``StorageError`` (a quota refusal, a failed
        store), after which the upload must be aborted, not committed.
        """
