"""RFC 4217 (FTP over TLS) commands: AUTH, PBSZ, PROT, CCC, and the TLS policy.

The order is strict and enforced here: AUTH TLS first (answered 234 by the
server, which then starts the handshake), PBSZ 0 only on a protected control
connection, PROT only after PBSZ. With ``tls_required`` nobody logs in or
moves data in clear text. CCC (dropping back to clear text) is always
refused: it would hand an attacker on the path the rest of the session.
"""

from __future__ import annotations

from fileferry.protocol import events
from fileferry.protocol.replies import Reply
from fileferry.protocol.state import SessionState

_MECHANISMS = frozenset({"TLS", "SSL", "TLS-C", "TLS-P"})


def auth(state: SessionState, arg: str, available: bool) -> Reply | events.Event:
    mechanism = arg.strip().upper()
    if not available:
        return Reply(502, "TLS is not configured on this server.")
    if mechanism not in _MECHANISMS:
        return Reply(504, "Unknown security mechanism; use AUTH TLS.")
    if state.tls_control:
        return Reply(503, "The control connection is already protected.")
    return events.StartTLS(mechanism)


def pbsz(state: SessionState, arg: str) -> Reply:
    if not state.tls_control:
        return Reply(503, "PBSZ needs a protected control connection: AUTH TLS first.")
    size = arg.strip()
    if not (size.isascii() and size.isdigit()):
        return Reply(501, "PBSZ needs a number.")
    state.pbsz = True
    return Reply(200, "PBSZ=0")


def prot(state: SessionState, arg: str, required: bool) -> Reply:
    level = arg.strip().upper()
    if not state.tls_control:
        return Reply(503, "PROT needs a protected control connection: AUTH TLS first.")
    if not state.pbsz:
        return Reply(503, "PROT needs PBSZ first.")
    if level == "P":
        state.prot_private = True
        return Reply(200, "Protection level set to Private.")
    if level == "C":
        if required:
            return Reply(534, "Clear data connections are refused here; use PROT P.")
        state.prot_private = False
        return Reply(200, "Protection level set to Clear.")
    if level in ("S", "E"):
        return Reply(536, "Only PROT C and PROT P are supported.")
    return Reply(504, "Unknown protection level.")


def ccc(state: SessionState) -> Reply:
    return Reply(534, "CCC refused: the control connection stays protected.")


def login_refusal(state: SessionState, required: bool) -> Reply | None:
    """With TLS required, refuse USER/PASS on a clear control connection."""
    if required and not state.tls_control:
        return Reply(530, "TLS is required: use AUTH TLS before logging in.")
    return None


def data_refusal(state: SessionState, required: bool) -> Reply | None:
    """With TLS required, refuse transfers whose data would be clear text."""
    if required and not state.prot_private:
        return Reply(521, "Data connections must be protected: use PBSZ 0 and PROT P.")
    return None


FEATURES = ("AUTH TLS", "AUTH SSL", "PBSZ", "PROT")
