"""RFC 4217 in the core: AUTH/PBSZ/PROT/CCC ordering, TLS-required policy, injection."""

from __future__ import annotations

from fileferry.protocol import events
from fileferry.protocol.commands import CoreConfig
from fileferry.protocol.replies import Reply
from fileferry.protocol.session import Session

from .dialogue import code, feed, login, passive, run

TLS = CoreConfig(tls_available=True)
REQUIRED = CoreConfig(tls_available=True, tls_required=True)


def start_tls(session: Session) -> None:
    event = run(session, "AUTH TLS")
    assert event == events.StartTLS("TLS")
    session.send(Reply(234, "AUTH TLS ok."), event)
    assert session.state.tls_control


def test_auth_without_certificate_is_not_offered() -> None:
    s = Session()
    assert code(s, "AUTH TLS") == 502
    feat = run(s, "FEAT")
    assert isinstance(feat, events.Answer) and "AUTH TLS" not in feat.reply.lines


def test_feat_advertises_tls_when_available() -> None:
    feat = run(Session(TLS), "FEAT")
    assert isinstance(feat, events.Answer)
    assert {"AUTH TLS", "AUTH SSL", "PBSZ", "PROT"} <= set(feat.reply.lines)


def test_order_auth_then_pbsz_then_prot() -> None:
    s = Session(TLS)
    assert code(s, "PBSZ 0") == 503
    assert code(s, "PROT P") == 503
    assert code(s, "AUTH KERBEROS") == 504
    start_tls(s)
    assert code(s, "AUTH TLS") == 503
    assert code(s, "PROT P") == 503  # PBSZ first
    assert code(s, "PBSZ x") == 501
    assert code(s, "PBSZ 0") == 200
    assert code(s, "PROT S") == 536
    assert code(s, "PROT Q") == 504
    assert code(s, "PROT P") == 200 and s.state.prot_private
    assert code(s, "PROT C") == 200 and not s.state.prot_private
    assert code(s, "CCC") == 534


def test_auth_ssl_is_a_synonym() -> None:
    s = Session(TLS)
    assert run(s, "AUTH SSL") == events.StartTLS("SSL")


def test_plaintext_after_auth_is_discarded() -> None:
    s = Session(TLS)
    feed(s, "AUTH TLS", "USER injected", "PASS injected")
    event = s.next_event()
    assert isinstance(event, events.StartTLS)
    s.send(Reply(234, "ok"), event)
    assert s.next_event() is events.NEED_DATA
    assert s.state.pending_user is None


def test_tls_required_refuses_clear_login_and_clear_data() -> None:
    s = Session(REQUIRED)
    assert code(s, "USER alice") == 530
    start_tls(s)
    login(s)
    passive(s)
    assert code(s, "RETR f") == 521
    assert code(s, "PBSZ 0") == 200
    assert code(s, "PROT C") == 534
    assert code(s, "PROT P") == 200
    assert isinstance(run(s, "RETR f"), events.RetrieveFile)


def test_failed_login_and_rein_keep_the_tls_state() -> None:
    s = Session(TLS)
    start_tls(s)
    assert code(s, "PBSZ 0") == 200 and code(s, "PROT P") == 200
    assert code(s, "USER a") == 331
    auth = run(s, "PASS wrong")
    s.send(Reply(530, "no"), auth)
    assert s.state.tls_control and s.state.prot_private
    login(s)
    rein = run(s, "REIN")
    s.send(Reply(220, "again"), rein)
    assert s.state.tls_control and s.state.prot_private and not s.state.logged_in


def test_implicit_tls_starts_protected() -> None:
    s = Session(REQUIRED, implicit_tls=True)
    assert s.state.tls_control and s.state.prot_private
    login(s)
    passive(s)
    assert isinstance(run(s, "LIST"), events.ListDirectory)
