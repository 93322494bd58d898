"""Coverage-guided fuzzing of the sans-I/O protocol core with atheris.

The input drives a whole session: bytes for the control stream (fed in
chunks of fuzzer-chosen sizes) and fuzzer-chosen answers for every event the
core emits (success or failure codes, 150 then an end for transfers). The
core must never raise, never produce an invalid reply, and keep its caps.

    python fuzz/fuzz_protocol.py -max_total_time=600      # a long run
    python fuzz/fuzz_protocol.py -runs=20000              # a short one (CI)
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from fileferry.protocol import events
    from fileferry.protocol.commands import CoreConfig
    from fileferry.protocol.replies import Reply
    from fileferry.protocol.session import MAX_HELD, Session

CONFIG = CoreConfig(
    max_line=512,
    tls_available=True,
    site_commands=(("EXEC", "run"), ("CHMOD", "chmod")),
)
GOOD = {
    events.Authenticate: 230,
    events.ChangeDirectory: 250,
    events.EnterPassive: 227,
    events.EnterActive: 200,
    events.RenameFrom: 350,
    events.StartTLS: 234,
    events.Reinitialize: 220,
    events.Quit: 221,
}


def answer(session: Session, event: events.Event, fdp: atheris.FuzzedDataProvider) -> None:
    if isinstance(event, events.Answer):
        reply = event.reply
        assert 100 <= reply.code <= 659
        reply.encode()
        return
    if isinstance(event, events.Transfer):
        if fdp.ConsumeBool():
            session.send(Reply(150, "go"), event)
        session.send(Reply(fdp.PickValueInList([226, 426, 451, 425, 550]), "end"), event)
        return
    ok = GOOD.get(type(event), 250)
    session.send(Reply(ok if fdp.ConsumeBool() else 550, "x"), event)


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    session = Session(CONFIG, implicit_tls=fdp.ConsumeBool())
    for _ in range(64):
        if fdp.remaining_bytes() == 0:
            session.receive_data(b"")
        else:
            session.receive_data(fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 300)))
        for _ in range(64):
            event = session.next_event()
            if event is events.NEED_DATA:
                break
            if isinstance(event, events.ConnectionClosed):
                return
            answer(session, event, fdp)
        assert len(session._held) <= MAX_HELD
        assert len(session._reader._buf) <= CONFIG.max_line + 1
        assert session.state.cwd.startswith("/")
        if fdp.remaining_bytes() == 0:
            return


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
