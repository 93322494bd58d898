"""The sans-I/O session: dialogues, self-answered commands, events, commits, ordering."""

from __future__ import annotations

import datetime as dt

import pytest

from fileferry.protocol import NEED_DATA, CoreConfig, Reply, Session, events
from fileferry.protocol.commands import COMMANDS, MAX_OFFSET
from fileferry.protocol.events import ListFormat, StoreMode
from fileferry.protocol.lines import IAC
from fileferry.protocol.listing import DEFAULT_FACTS
from fileferry.protocol.session import MAX_HELD, ProtocolError
from fileferry.protocol.state import Access, DataMode, Phase

from .dialogue import ask, code, feed, fresh, login, passive, run, start

LOGIN_VERBS = sorted(
    v for v, c in COMMANDS.items() if c.access in (Access.LOGIN, Access.OUT_OF_BAND)
)
TRANSFER_LINES = ["RETR f", "STOR f", "APPE f", "STOU", "LIST", "NLST", "MLSD"]


def cwd_to(session: Session, path: str) -> None:
    event = run(session, f"CWD {path}")
    assert isinstance(event, events.ChangeDirectory)
    session.send(Reply(250, "ok"), event)


# --- login ----------------------------------------------------------------------------


def test_full_login_dialogue():
    s = Session()
    assert s.phase is Phase.NEED_USER
    assert s.send(Reply(220, "fileferry ready")) == b"220 fileferry ready\r\n"
    assert s.next_event() is NEED_DATA

    feed(s, "USER alice")
    user = s.next_event()
    assert user == events.Answer(Reply(331, "Please specify the password."))
    assert s.send(user.reply, user) == b"331 Please specify the password.\r\n"
    assert s.phase is Phase.NEED_PASS
    assert s.state.pending_user == "alice"

    feed(s, "PASS s3cret")
    auth = s.next_event()
    assert auth == events.Authenticate("alice", "s3cret")
    assert s.phase is Phase.WAITING
    assert not s.state.logged_in  # nothing is committed before the reply
    assert s.next_event() is NEED_DATA

    assert s.send(Reply(230, "Welcome."), auth) == b"230 Welcome.\r\n"
    assert s.state.logged_in
    assert s.state.username == "alice"
    assert s.state.cwd == "/"
    assert s.phase is Phase.READY
    assert code(s, "PWD") == 257


def test_pass_may_be_empty():
    s = Session()
    assert code(s, "USER anonymous") == 331
    assert run(s, "PASS") == events.Authenticate("anonymous", "")


def test_password_keeps_its_spaces():
    s = Session()
    code(s, "USER bob")
    assert run(s, "PASS  two words ") == events.Authenticate("bob", " two words ")


def test_second_user_replaces_the_first():
    s = Session()
    code(s, "USER alice")
    code(s, "USER bob")
    assert run(s, "PASS x") == events.Authenticate("bob", "x")


def test_user_needs_a_name():
    s = Session()
    assert code(s, "USER") == 501
    assert s.phase is Phase.NEED_USER


def test_login_failure_resets_the_session():
    s = Session()
    code(s, "TYPE I")
    code(s, "OPTS MLST type;")
    code(s, "USER alice")
    auth = run(s, "PASS wrong")
    s.send(Reply(530, "Login incorrect."), auth)
    assert not s.state.logged_in
    assert s.state.username is None
    assert s.state.pending_user is None
    assert s.state.ascii is True
    assert s.state.facts == DEFAULT_FACTS
    assert s.phase is Phase.NEED_USER
    assert code(s, "PASS again") == 503
    assert code(s, "PWD") == 530


def test_pass_without_user_is_503():
    assert code(Session(), "PASS secret") == 503


def test_user_and_pass_after_login_are_503():
    s = login()
    assert ask(s, "USER bob") == Reply(503, "Already logged in.")
    assert code(s, "PASS x") == 503
    assert s.state.username == "alice"


@pytest.mark.parametrize("verb", LOGIN_VERBS)
@pytest.mark.parametrize("arg", ["", " x"])
def test_every_login_command_is_530_before_login(verb, arg):
    s = Session()
    assert ask(s, verb + arg) == Reply(530, "Please log in with USER and PASS first.")
    code(s, "USER alice")
    assert code(s, verb + arg) == 530
    assert s.phase is Phase.NEED_PASS  # a refused command leaves the pending user


def test_free_commands_work_before_login():
    s = Session()
    for line, expected in [
        ("NOOP", 200),
        ("SYST", 215),
        ("FEAT", 211),
        ("HELP", 214),
        ("HELP RETR", 214),
        ("OPTS UTF8 ON", 200),
        ("TYPE I", 200),
        ("MODE S", 200),
        ("STRU F", 200),
        ("ACCT x", 202),
    ]:
        assert code(s, line) == expected, line
    assert run(s, "REIN") == events.Reinitialize()


def test_every_verb_is_covered_by_these_tests():
    free = {v for v, c in COMMANDS.items() if c.access is Access.FREE}
    assert free == {
        "ACCT",
        "REIN",
        "NOOP",
        "SYST",
        "FEAT",
        "OPTS",
        "HELP",
        "TYPE",
        "MODE",
        "STRU",
        "AUTH",  # the TLS commands: see test_tls_commands.py
        "PBSZ",
        "PROT",
        "CCC",
    }
    assert {v for v, c in COMMANDS.items() if c.access is Access.OUT_OF_BAND} == {"STAT", "ABOR"}


# --- commands the core answers itself -------------------------------------------------


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        ("NOOP", Reply(200, "NOOP ok.")),
        ("noop", Reply(200, "NOOP ok.")),
        ("  NOOP", Reply(200, "NOOP ok.")),
        ("SYST", Reply(215, "UNIX Type: L8")),
        ("ACCT", Reply(202, "ACCT not needed.")),
        ("ACCT billing", Reply(202, "ACCT not needed.")),
        ("ALLO", Reply(202, "No storage allocation necessary.")),
        ("ALLO 1000", Reply(202, "No storage allocation necessary.")),
        ("ALLO 1000 R 10", Reply(202, "No storage allocation necessary.")),
        ("SMNT /mnt", Reply(502, "SMNT not implemented: there is one file system per user.")),
        ("OPTS UTF8 ON", Reply(200, "UTF8 mode is always on.")),
        ("OPTS utf8", Reply(200, "UTF8 mode is always on.")),
        ("OPTS UTF8 OFF", Reply(504, "UTF8 cannot be switched off.")),
        ("OPTS FOO bar", Reply(501, "Unknown option.")),
        ("OPTS", Reply(501, "Syntax: OPTS <option> [value]")),
        ("HELP RETR", Reply(214, "Syntax: RETR <path>")),
        ("help stor", Reply(214, "Syntax: STOR <path>")),
        ("HELP XYZZY", Reply(502, "Unknown command.")),
        ("MODE S", Reply(200, "Mode set to S.")),
        ("mode s", Reply(200, "Mode set to S.")),
        ("MODE B", Reply(504, "Only stream mode (S) is supported.")),
        ("MODE C", Reply(504, "Only stream mode (S) is supported.")),
        ("MODE Z", Reply(504, "Only stream mode (S) is supported.")),
        ("MODE Q", Reply(501, "Unknown MODE.")),
        ("MODE", Reply(501, "Syntax: MODE S")),
        ("STRU F", Reply(200, "Structure set to F.")),
        ("STRU R", Reply(504, "Only file structure (F) is supported.")),
        ("STRU P", Reply(504, "Only file structure (F) is supported.")),
        ("STRU X", Reply(501, "Unknown STRU.")),
        ("PWD", Reply(257, '"/" is the current directory.')),
        ("XPWD", Reply(257, '"/" is the current directory.')),
        ("PWD /x", Reply(501, "PWD takes no argument.")),
        ("NOOP x", Reply(501, "NOOP takes no argument.")),
        ("SITE", Reply(501, "Syntax: SITE <command> [args]")),
        ("SITE CHMOD 755 f", Reply(501, "Unknown SITE command.")),
        ("SITE HELPX", Reply(501, "Unknown SITE command.")),
        ("XYZZY", Reply(500, "Unknown command XYZZY.")),
        ("", Reply(500, "Empty command.")),
        ("   ", Reply(500, "Empty command.")),
    ],
)
def test_answered_by_the_core(line, reply):
    s = login()
    assert ask(s, line) == reply
    assert s.phase is Phase.READY


def test_unknown_verb_is_truncated_in_the_reply():
    assert ask(login(), "A" * 100 + " x") == Reply(500, "Unknown command " + "A" * 16 + ".")


@pytest.mark.parametrize("verb", ["X-Y", "caf\udce9", "ÜBER", "A\x7fB"])
def test_unknown_verb_is_echoed_only_when_plain_ascii(verb):
    assert ask(login(), verb) == Reply(500, "Unknown command.")


def test_unknown_and_empty_before_login_are_500_not_530():
    s = Session()
    assert code(s, "XYZZY") == 500
    assert code(s, "") == 500


def test_feat_lists_exactly_the_features():
    reply = ask(Session(), "FEAT")
    assert reply.code == 211
    assert reply.lines == (
        "EPRT",
        "EPSV",
        "HASH SHA-256*;SHA-512;SHA-1;MD5;CRC32",
        "MDTM",
        "MFMT",
        "MLST type*;size*;modify*;perm*;unique*;UNIX.mode*;",
        "REST STREAM",
        "SIZE",
        "TVFS",
        "UTF8",
        "XCRC",
        "XMD5",
        "XSHA1",
        "XSHA256",
        "XSHA512",
    )
    assert reply.encode().startswith(b"211-")
    assert reply.encode().endswith(b"211 End\r\n")


def test_feat_includes_extra_features_sorted():
    s = fresh(extra_features=("PROT", "AUTH TLS", "PBSZ"))
    lines = ask(s, "FEAT").lines
    assert "AUTH TLS" in lines
    assert "PBSZ" in lines
    assert list(lines) == sorted(lines)


def test_feat_reflects_opts_mlst():
    s = Session()
    assert ask(s, "OPTS MLST size;Type;bogus;") == Reply(200, "MLST OPTS type;size;")
    assert s.state.facts == ("type", "size")
    assert "MLST type*;size*;modify;perm;unique;UNIX.mode;" in ask(s, "FEAT").lines
    assert ask(s, "OPTS MLST unix.mode;") == Reply(200, "MLST OPTS UNIX.mode;")
    assert ask(s, "OPTS MLST") == Reply(200, "MLST OPTS ")
    assert s.state.facts == ()


def test_help_lists_every_verb():
    reply = ask(Session(), "HELP")
    assert reply.code == 214
    assert reply.footer == "Help OK."
    listed = " ".join(reply.lines).split()
    assert sorted(listed) == sorted(COMMANDS)


def test_site_help_lists_configured_site_commands():
    s = login(fresh(site_commands=(("CHMOD", "change mode"), ("UMASK", "show umask"))))
    reply = ask(s, "SITE HELP")
    assert reply.code == 214
    assert reply.lines == ("HELP: show this list", "CHMOD: change mode", "UMASK: show umask")
    assert ask(s, "site help").code == 214


def test_configured_site_command_becomes_an_event():
    s = login(fresh(site_commands=(("CHMOD", "change mode"),)))
    cwd_to(s, "pub")
    assert run(s, "SITE chmod  755 f.txt ") == events.SiteCommand("CHMOD", "755 f.txt", "/pub")
    assert s.phase is Phase.WAITING


def test_site_commands_need_login():
    s = fresh(site_commands=(("CHMOD", "change mode"),))
    assert code(s, "SITE CHMOD 755 f") == 530
    assert code(s, "SITE HELP") == 530


@pytest.mark.parametrize(
    ("arg", "reply_code", "ascii"),
    [
        ("A", 200, True),
        ("a", 200, True),
        ("A N", 200, True),
        ("I", 200, False),
        ("i", 200, False),
        ("L 8", 200, False),
        ("L8", 200, False),
        ("E", 504, None),
        ("A T", 504, None),
        ("A C", 504, None),
        ("L 7", 504, None),
        ("X", 501, None),
        ("", 501, None),
    ],
)
def test_type(arg, reply_code, ascii):
    s = login()
    before = s.state.ascii
    assert code(s, f"TYPE {arg}".strip()) == reply_code
    assert s.state.ascii == (before if ascii is None else ascii)


def test_type_switches_back_and_forth():
    s = login()
    assert s.state.ascii  # RFC 959 default
    code(s, "TYPE I")
    assert not s.state.ascii
    code(s, "TYPE A")
    assert s.state.ascii


@pytest.mark.parametrize("offset", ["0", "100", "00012", str(MAX_OFFSET)])
def test_rest_valid(offset):
    s = login()
    assert ask(s, f"REST {offset}") == Reply(
        350, f"Restarting at {int(offset)}. Send STOR or RETR."
    )
    assert s.state.rest == int(offset)


@pytest.mark.parametrize(
    "offset",
    ["-1", "abc", "1.5", "+5", "1e3", "0x10", str(MAX_OFFSET + 1), "²", "\u0661\u0662", "9" * 4000],
)
def test_rest_invalid(offset):
    s = login()
    code(s, "REST 7")
    assert ask(s, f"REST {offset}") == Reply(501, "REST needs a non-negative byte offset.")
    assert s.state.rest == 7


def test_rest_without_argument():
    assert ask(login(), "REST") == Reply(501, "Syntax: REST <offset>")


def test_pwd_follows_committed_cwd():
    s = login()
    cwd_to(s, "docs")
    assert ask(s, "PWD") == Reply(257, '"/docs" is the current directory.')
    cwd_to(s, 'say "hi"')
    assert ask(s, "XPWD") == Reply(257, '"/docs/say ""hi""" is the current directory.')


# --- events ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cwd", "line", "event"),
    [
        ("/", "CWD docs", events.ChangeDirectory("/docs")),
        ("/a/b", "CWD ..", events.ChangeDirectory("/a")),
        ("/a/b", "XCWD ../../../..", events.ChangeDirectory("/")),
        ("/a", "CWD /x/./y//z/", events.ChangeDirectory("/x/y/z")),
        ("/a/b", "CDUP", events.ChangeDirectory("/a")),
        ("/a", "XCUP", events.ChangeDirectory("/")),
        ("/", "CDUP", events.ChangeDirectory("/")),
        ("/a", "MKD new dir", events.MakeDirectory("/a/new dir")),
        ("/a", "XMKD ../n", events.MakeDirectory("/n")),
        ("/a", "RMD old", events.RemoveDirectory("/a/old")),
        ("/a", "XRMD /old", events.RemoveDirectory("/old")),
        ("/a", "DELE f.txt", events.DeleteFile("/a/f.txt")),
        ("/a", "SIZE f.txt", events.FileSize("/a/f.txt")),
        ("/a", "MDTM f.txt", events.ModificationTime("/a/f.txt")),
        ("/a", "RNFR f.txt", events.RenameFrom("/a/f.txt")),
        ("/a", "STAT", events.Status(None)),
        ("/a", "STAT -la", events.Status("/a")),
        ("/a", "STAT -la sub", events.Status("/a/sub")),
        ("/a", "MLST", events.MachineListFile("/a", DEFAULT_FACTS)),
        ("/a", "MLST f", events.MachineListFile("/a/f", DEFAULT_FACTS)),
        ("/a", "ABOR", events.Abort()),
        ("/a", "QUIT", events.Quit()),
        ("/a", "REIN", events.Reinitialize()),
        ("/a", "PASV", events.EnterPassive(extended=False)),
        ("/a", "EPSV", events.EnterPassive(extended=True, protocol=None)),
        ("/a", "EPSV 1", events.EnterPassive(extended=True, protocol=1)),
        ("/a", "EPSV 2", events.EnterPassive(extended=True, protocol=2)),
        ("/a", "PORT 127,0,0,1,4,1", events.EnterActive("127.0.0.1", 1025, extended=False)),
        ("/a", "EPRT |1|127.0.0.1|1025|", events.EnterActive("127.0.0.1", 1025, extended=True)),
        ("/a", "EPRT |2|::1|2121|", events.EnterActive("::1", 2121, extended=True)),
        ("/", "DELE  two  spaces ", events.DeleteFile("/ two  spaces ")),
    ],
)
def test_events_resolve_paths_against_cwd(cwd, line, event):
    s = login()
    if cwd != "/":
        cwd_to(s, cwd)
    got = run(s, line)
    assert got == event
    assert s.phase is Phase.WAITING


def test_mdtm_with_a_time_sets_it():
    s = login()
    when = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC).timestamp()
    assert run(s, "MDTM 20240102030405 f.txt") == events.SetModificationTime("/f.txt", when)


def test_mfmt():
    s = login()
    when = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC).timestamp()
    assert run(s, "MFMT 20240102030405 a b.txt") == events.SetModificationTime("/a b.txt", when)


@pytest.mark.parametrize(
    "line",
    ["MFMT 20240102030405", "MFMT x f", "MFMT 20241302030405 f", "MDTM 20241302030405 f"],
)
def test_mfmt_bad(line):
    assert code(login(), line) == 501


@pytest.mark.parametrize(
    ("line", "reply_code"),
    [
        ("CWD a\\b", 550),
        ("RMD a\x01b", 550),
        ("DELE a\x7fb", 550),
        ("SIZE " + "x" * 256, 550),
        ("MKD a\\b", 553),
        ("MLST a\\b", 550),
        ("STAT a\\b", 550),
        ("MFMT 20240102030405 a\\b", 550),
    ],
)
def test_bad_paths_are_refused(line, reply_code):
    s = login()
    assert code(s, line) == reply_code
    assert s.phase is Phase.READY


def test_non_utf8_names_reach_events_as_surrogates():
    s = login()
    assert run(s, b"DELE caf\xe9.txt\r\n") == events.DeleteFile("/caf\udce9.txt")


@pytest.mark.parametrize("line", TRANSFER_LINES)
def test_transfers_need_a_data_channel(line):
    s = login()
    assert ask(s, line) == Reply(425, "Use PORT, EPRT, PASV or EPSV first.")
    assert s.phase is Phase.READY


def test_transfer_events():
    s = login()
    cwd_to(s, "/pub")
    cases = [
        ("RETR f", events.RetrieveFile("/pub/f", 0, True)),
        ("RETR ../x/./y", events.RetrieveFile("/x/y", 0, True)),
        ("STOR up load", events.StoreFile("/pub/up load", 0, StoreMode.REPLACE, True)),
        ("APPE log", events.StoreFile("/pub/log", 0, StoreMode.APPEND, True)),
        ("STOU", events.StoreFile("/pub", 0, StoreMode.UNIQUE, True)),
        ("STOU name", events.StoreFile("/pub/name", 0, StoreMode.UNIQUE, True)),
        ("LIST", events.ListDirectory("/pub", ListFormat.LIST, DEFAULT_FACTS, False)),
        ("LIST -la", events.ListDirectory("/pub", ListFormat.LIST, DEFAULT_FACTS, False)),
        ("LIST -la sub", events.ListDirectory("/pub/sub", ListFormat.LIST, DEFAULT_FACTS, True)),
        ("LIST -a -l a b", events.ListDirectory("/pub/a b", ListFormat.LIST, DEFAULT_FACTS, True)),
        ("LIST /", events.ListDirectory("/", ListFormat.LIST, DEFAULT_FACTS, True)),
        ("NLST -a", events.ListDirectory("/pub", ListFormat.NLST, DEFAULT_FACTS, False)),
        ("NLST x", events.ListDirectory("/pub/x", ListFormat.NLST, DEFAULT_FACTS, True)),
        ("MLSD", events.ListDirectory("/pub", ListFormat.MLSD, DEFAULT_FACTS, False)),
        # MLSD takes a path, never ls flags.
        ("MLSD -la", events.ListDirectory("/pub/-la", ListFormat.MLSD, DEFAULT_FACTS, True)),
    ]
    for line, expected in cases:
        event = start(s, line)
        assert event == expected, line
        assert s.phase is Phase.TRANSFERRING
        s.send(Reply(150, "Here it comes."), event)
        s.send(Reply(226, "Done."), event)
        assert s.phase is Phase.READY


def test_type_i_reaches_transfer_events():
    s = login()
    code(s, "TYPE I")
    assert start(s, "RETR f") == events.RetrieveFile("/f", 0, False)


def finish(s: Session, event: events.Event, reply_code: int = 226) -> None:
    s.send(Reply(reply_code, "x"), event)


def test_rest_is_carried_into_retr_then_reset():
    s = login()
    code(s, "REST 100")
    event = start(s, "RETR f")
    assert event == events.RetrieveFile("/f", 100, True)
    assert s.state.rest == 0
    finish(s, event)
    assert start(s, "RETR f") == events.RetrieveFile("/f", 0, True)


def test_rest_is_carried_into_stor():
    s = login()
    code(s, "REST 4096")
    event = start(s, "STOR f")
    assert event == events.StoreFile("/f", 4096, StoreMode.REPLACE, True)
    finish(s, event)
    assert start(s, "STOR f") == events.StoreFile("/f", 0, StoreMode.REPLACE, True)


@pytest.mark.parametrize(
    ("line", "mode"), [("APPE f", StoreMode.APPEND), ("STOU", StoreMode.UNIQUE)]
)
def test_appe_and_stou_ignore_rest_and_reset_it(line, mode):
    s = login()
    code(s, "REST 100")
    event = start(s, line)
    assert isinstance(event, events.StoreFile)
    assert event.offset == 0
    assert event.mode is mode
    assert s.state.rest == 0
    finish(s, event)
    assert start(s, "RETR f") == events.RetrieveFile("/f", 0, True)


def test_mlsd_and_mlst_use_the_facts_chosen_by_opts():
    s = login()
    code(s, "OPTS MLST type;perm;")
    assert run(s, "MLST f") == events.MachineListFile("/f", ("type", "perm"))
    finish(s, s._outstanding[0], 250)
    event = start(s, "MLSD")
    assert event == events.ListDirectory("/", ListFormat.MLSD, ("type", "perm"), False)


def test_port_eprt_epsv_errors():
    s = login()
    assert ask(s, "PORT 1,2,3") == Reply(501, "PORT needs six comma-separated numbers")
    assert code(s, "PORT 300,1,1,1,1,1") == 501
    assert code(s, "EPRT |3|1.2.3.4|21|") == 522
    assert code(s, "EPRT |1|::1|21|") == 501
    assert code(s, "EPRT |1|1.2.3.4|²|") == 501
    assert code(s, "EPSV 3") == 522
    assert code(s, "PASV x") == 501
    assert s.state.data_mode is DataMode.NONE


def test_epsv_all_locks_out_the_other_data_commands():
    s = login()
    assert ask(s, "EPSV ALL") == Reply(200, "EPSV ALL ok.")
    assert s.state.epsv_all
    for line in ("PASV", "PORT 127,0,0,1,4,1", "EPRT |1|127.0.0.1|1025|"):
        assert ask(s, line) == Reply(503, "EPSV ALL in effect: use EPSV."), line
    assert run(s, "EPSV") == events.EnterPassive(extended=True)


# --- state commits on the reply -------------------------------------------------------


def test_cwd_moves_only_on_a_2xx():
    s = login()
    event = run(s, "CWD missing")
    s.send(Reply(550, "No such directory."), event)
    assert s.state.cwd == "/"
    event = run(s, "CWD here")
    s.send(Reply(250, "ok"), event)
    assert s.state.cwd == "/here"
    event = run(s, "CDUP")
    s.send(Reply(200, "ok"), event)
    assert s.state.cwd == "/"


def test_a_preliminary_reply_does_not_complete_an_ordinary_event():
    s = login()
    event = run(s, "CWD x")
    s.send(Reply(150, "hm"), event)
    assert s.phase is Phase.WAITING
    assert s.state.cwd == "/"
    s.send(Reply(250, "ok"), event)
    assert s.state.cwd == "/x"


@pytest.mark.parametrize(
    ("line", "ok", "mode"),
    [
        ("PASV", 227, DataMode.PASSIVE),
        ("EPSV", 229, DataMode.PASSIVE),
        ("PORT 127,0,0,1,4,1", 200, DataMode.ACTIVE),
        ("EPRT |1|127.0.0.1|1025|", 200, DataMode.ACTIVE),
    ],
)
def test_data_mode_commits(line, ok, mode):
    s = login()
    event = run(s, line)
    assert s.state.data_mode is DataMode.NONE
    s.send(Reply(ok, "ok"), event)
    assert s.state.data_mode is mode
    # A refused second attempt leaves no data channel at all.
    event = run(s, line)
    s.send(Reply(425 if ok != 200 else 504, "no"), event)
    assert s.state.data_mode is DataMode.NONE


@pytest.mark.parametrize("final", [226, 426, 451, 550, 425])
def test_transfer_final_reply_uses_up_the_data_channel(final):
    s = login()
    event = start(s, "RETR f")
    assert s.state.data_mode is DataMode.PASSIVE
    if final != 550:  # 550 comes before any 150
        s.send(Reply(150, "go"), event)
        assert s.state.transfer_started
    s.send(Reply(final, "end"), event)
    assert not s.state.transfer_started
    assert s.state.data_mode is DataMode.NONE
    assert s.phase is Phase.READY
    assert code(s, "RETR f") == 425


def test_rename_dialogue():
    s = login()
    rnfr = run(s, "RNFR old")
    s.send(Reply(350, "Ready for RNTO."), rnfr)
    assert s.state.rename_from == "/old"
    code(s, "NOOP")  # a FREE command in between keeps the pending rename
    rnto = run(s, "RNTO new")
    assert rnto == events.RenameTo("/old", "/new")
    s.send(Reply(250, "Renamed."), rnto)
    assert s.state.rename_from is None
    assert ask(s, "RNTO again") == Reply(503, "RNFR required first.")


def test_rnto_without_rnfr_is_503():
    assert ask(login(), "RNTO x") == Reply(503, "RNFR required first.")


def test_failed_rnfr_leaves_nothing_to_rename():
    s = login()
    rnfr = run(s, "RNFR missing")
    s.send(Reply(550, "No such file."), rnfr)
    assert code(s, "RNTO x") == 503


def test_another_command_between_rnfr_and_rnto_cancels_the_rename():
    s = login()
    rnfr = run(s, "RNFR old")
    s.send(Reply(350, "ok"), rnfr)
    code(s, "PWD")
    assert code(s, "RNTO new") == 503


def test_failed_rnto_clears_the_rename():
    s = login()
    rnfr = run(s, "RNFR old")
    s.send(Reply(350, "ok"), rnfr)
    rnto = run(s, "RNTO new")
    s.send(Reply(553, "no"), rnto)
    assert code(s, "RNTO new") == 503


def test_rnto_with_a_bad_path_is_553():
    s = login()
    rnfr = run(s, "RNFR old")
    s.send(Reply(350, "ok"), rnfr)
    assert code(s, "RNTO a\\b") == 553


def test_rein_resets_everything_on_220():
    s = login()
    code(s, "TYPE I")
    code(s, "EPSV ALL")
    cwd_to(s, "sub")
    passive_event = run(s, "EPSV")
    s.send(Reply(229, "ok"), passive_event)
    rein = run(s, "REIN")
    s.send(Reply(220, "Ready for a new user."), rein)
    assert s.phase is Phase.NEED_USER
    assert not s.state.logged_in
    assert s.state.cwd == "/"
    assert s.state.ascii
    assert not s.state.epsv_all
    assert s.state.data_mode is DataMode.NONE
    assert code(s, "PWD") == 530


def test_rein_refused_keeps_the_login():
    s = login()
    rein = run(s, "REIN")
    s.send(Reply(502, "no"), rein)
    assert s.state.logged_in


def test_quit_closes_the_session():
    s = login()
    quit_event = run(s, "QUIT")
    assert quit_event == events.Quit()
    assert s.send(Reply(221, "Goodbye."), quit_event) == b"221 Goodbye.\r\n"
    assert s.phase is Phase.CLOSED
    feed(s, "NOOP")
    s.receive_data(b"")
    assert s.next_event() is NEED_DATA


def test_quit_before_login():
    s = Session()
    quit_event = run(s, "QUIT")
    assert quit_event == events.Quit()
    s.send(Reply(221, "Goodbye."), quit_event)
    assert s.phase is Phase.CLOSED


def test_quit_takes_no_argument():
    assert code(Session(), "QUIT now") == 501


def test_close_stops_everything():
    s = login()
    feed(s, "NOOP", "PWD")
    s.close()
    assert s.phase is Phase.CLOSED
    assert s.next_event() is NEED_DATA


# --- pipelining -------------------------------------------------------------------------


def test_pipelined_commands_are_handled_in_order():
    s = login()
    feed(s, "NOOP", "CWD sub", "PWD", "SYST", "TYPE I")
    assert s.next_event() == events.Answer(Reply(200, "NOOP ok."))
    cwd = s.next_event()
    assert cwd == events.ChangeDirectory("/sub")
    # PWD must wait: its answer depends on the CWD's outcome.
    assert s.next_event() is NEED_DATA
    assert s.next_event() is NEED_DATA
    s.send(Reply(250, "ok"), cwd)
    assert s.next_event() == events.Answer(Reply(257, '"/sub" is the current directory.'))
    assert s.next_event() == events.Answer(Reply(215, "UNIX Type: L8"))
    assert s.next_event() == events.Answer(Reply(200, "Type set to I."))
    assert s.next_event() is NEED_DATA


def test_pipelined_login():
    s = Session()
    feed(s, "USER alice", "PASS secret", "PWD")
    assert s.next_event().reply.code == 331  # type: ignore[attr-defined]
    auth = s.next_event()
    assert isinstance(auth, events.Authenticate)
    assert s.next_event() is NEED_DATA
    s.send(Reply(230, "ok"), auth)
    assert s.next_event().reply.code == 257  # type: ignore[attr-defined]


def test_pipelined_commands_after_a_failed_login_are_refused():
    s = Session()
    feed(s, "USER alice", "PASS wrong", "RETR f")
    s.next_event()
    auth = s.next_event()
    s.send(Reply(530, "no"), auth)
    assert s.next_event() == events.Answer(Reply(530, "Please log in with USER and PASS first."))


def test_byte_by_byte_pipelining():
    s = login()
    for b in b"NOOP\r\nSYST\r\n":
        s.receive_data(bytes([b]))
    assert code_of(s.next_event()) == 200
    assert code_of(s.next_event()) == 215
    assert s.next_event() is NEED_DATA


def code_of(event: events.Event) -> int:
    assert isinstance(event, events.Answer), event
    return event.reply.code


# --- during a transfer ----------------------------------------------------------------


def test_stat_runs_during_a_transfer_and_other_commands_wait():
    s = login()
    retr = start(s, "RETR big")
    s.send(Reply(150, "Opening."), retr)
    feed(s, "PWD", "STAT", "NOOP", "TYPE I")
    status = s.next_event()
    assert status == events.Status(None)
    assert s.next_event() is NEED_DATA
    s.send(Reply(211, "Transferring big, 10 bytes so far."), status)
    assert s.next_event() is NEED_DATA  # the transfer still runs
    assert s.state.ascii
    s.send(Reply(226, "Done."), retr)
    assert code_of(s.next_event()) == 257
    assert code_of(s.next_event()) == 200
    assert code_of(s.next_event()) == 200
    assert not s.state.ascii
    assert s.next_event() is NEED_DATA


def test_stat_with_a_path_during_a_transfer():
    s = login()
    start(s, "RETR big")
    assert run(s, "STAT /etc") == events.Status("/etc")


def test_abort_during_a_transfer_transfer_first():
    s = login()
    retr = start(s, "RETR big")
    s.send(Reply(150, "Opening."), retr)
    feed(s, bytes([IAC, 0xF4, IAC, 0xF2]) + b"ABOR\r\n", "NOOP")
    abort = s.next_event()
    assert abort == events.Abort()
    assert s.next_event() is NEED_DATA  # NOOP waits for both replies
    assert s.send(Reply(426, "Transfer aborted."), retr) == b"426 Transfer aborted.\r\n"
    assert s.phase is Phase.WAITING
    assert s.next_event() is NEED_DATA
    assert s.send(Reply(226, "ABOR ok."), abort) == b"226 ABOR ok.\r\n"
    assert s.phase is Phase.READY
    assert s.state.data_mode is DataMode.NONE
    assert not s.state.transfer_started
    assert code_of(s.next_event()) == 200


def test_abort_during_a_transfer_abort_answered_first_is_accepted():
    s = login()
    stor = start(s, "STOR up")
    s.send(Reply(150, "Opening."), stor)
    abort = run(s, "ABOR")
    s.send(Reply(226, "ABOR ok."), abort)
    assert s.phase is Phase.TRANSFERRING
    s.send(Reply(426, "aborted"), stor)
    assert s.phase is Phase.READY


def test_abort_before_the_150():
    s = login()
    start(s, "LIST")
    assert run(s, "ABOR") == events.Abort()


def test_abort_when_idle_drops_the_data_channel():
    s = login()
    passive(s)
    abort = run(s, "ABOR")
    assert abort == events.Abort()
    s.send(Reply(225, "No transfer to abort."), abort)
    assert s.state.data_mode is DataMode.NONE


def test_quit_during_a_transfer_is_acted_on_at_once():
    s = login()
    retr = start(s, "RETR big")
    s.send(Reply(150, "Opening."), retr)
    feed(s, "NOOP", "QUIT")
    quit_event = s.next_event()
    assert quit_event == events.Quit()
    s.send(Reply(426, "aborted"), retr)
    s.send(Reply(221, "Goodbye."), quit_event)
    assert s.phase is Phase.CLOSED
    assert s.next_event() is NEED_DATA


def test_login_commands_during_a_transfer_wait_not_refused():
    s = login()
    retr = start(s, "RETR big")
    feed(s, "USER bob", "PASS x", "REIN")
    assert s.next_event() is NEED_DATA
    s.send(Reply(226, "Done."), retr)
    assert s.next_event() == events.Answer(Reply(503, "Already logged in."))
    assert code_of(s.next_event()) == 503
    assert s.next_event() == events.Reinitialize()


def test_held_commands_are_capped():
    s = login()
    retr = start(s, "RETR big")
    feed(s, *["NOOP"] * MAX_HELD, "SYST")
    assert s.next_event() == events.Answer(Reply(421, "Too many commands during a transfer."))
    assert s.next_event() is NEED_DATA
    s.send(Reply(226, "Done."), retr)
    for _ in range(MAX_HELD):
        assert code_of(s.next_event()) == 200
    assert s.next_event() is NEED_DATA


def test_too_long_line_during_a_transfer_is_answered_at_once():
    s = login(fresh(max_line=64))
    start(s, "RETR big")
    feed(s, "NOOP " + "x" * 100)
    assert s.next_event() == events.Answer(Reply(500, "Command line too long."))


def test_unknown_command_during_a_transfer_waits():
    s = login()
    retr = start(s, "RETR big")
    feed(s, "XYZZY")
    assert s.next_event() is NEED_DATA
    s.send(Reply(226, "Done."), retr)
    assert code_of(s.next_event()) == 500


def test_eof_during_a_transfer_is_reported():
    s = login()
    start(s, "RETR big")
    s.receive_data(b"")
    assert s.next_event() == events.ConnectionClosed()
    assert s.next_event() is NEED_DATA


# --- long lines, EOF --------------------------------------------------------------------


def test_too_long_line_gives_500_and_the_session_goes_on():
    s = login(fresh(max_line=64))
    feed(s, "RETR " + "x" * 200, "SYST")
    assert s.next_event() == events.Answer(Reply(500, "Command line too long."))
    assert code_of(s.next_event()) == 215


def test_too_long_line_with_the_default_cap():
    s = Session()
    s.receive_data(b"USER " + b"a" * 10_000 + b"\r\n")
    assert code_of(s.next_event()) == 500
    assert s.phase is Phase.NEED_USER


def test_eof_gives_connection_closed_once():
    s = Session()
    s.receive_data(b"")
    assert s.next_event() == events.ConnectionClosed()
    assert s.next_event() is NEED_DATA
    assert s.next_event() is NEED_DATA


def test_eof_after_pipelined_lines_comes_after_them():
    s = Session()
    feed(s, "NOOP", "SYST")
    s.receive_data(b"")
    assert code_of(s.next_event()) == 200
    assert code_of(s.next_event()) == 215
    assert s.next_event() == events.ConnectionClosed()
    assert s.next_event() is NEED_DATA


def test_eof_while_an_event_is_outstanding_is_reported_after_its_reply():
    s = login()
    feed(s, "CWD x")
    s.receive_data(b"")
    cwd = s.next_event()
    assert s.next_event() is NEED_DATA
    s.send(Reply(250, "ok"), cwd)
    assert s.next_event() == events.ConnectionClosed()


def test_eof_drops_a_partial_line():
    s = Session()
    s.receive_data(b"NOO")
    s.receive_data(b"")
    assert s.next_event() == events.ConnectionClosed()


# --- send() contract --------------------------------------------------------------------


def test_send_with_an_event_that_is_not_outstanding_raises():
    s = login()
    with pytest.raises(ProtocolError):
        s.send(Reply(250, "ok"), events.ChangeDirectory("/"))


def test_send_needs_the_very_event_not_an_equal_one():
    s = login()
    cwd = run(s, "CWD x")
    with pytest.raises(ProtocolError):
        s.send(Reply(250, "ok"), events.ChangeDirectory("/x"))
    assert s.phase is Phase.WAITING
    assert s.state.cwd == "/"
    s.send(Reply(250, "ok"), cwd)
    assert s.state.cwd == "/x"


def test_a_second_final_reply_raises():
    s = login()
    cwd = run(s, "CWD x")
    s.send(Reply(250, "ok"), cwd)
    with pytest.raises(ProtocolError):
        s.send(Reply(250, "ok"), cwd)


def test_send_with_need_data_raises():
    with pytest.raises(ProtocolError):
        Session().send(Reply(200, "ok"), NEED_DATA)


def test_send_without_an_event_commits_nothing():
    s = login()
    cwd = run(s, "CWD x")
    assert s.send(Reply(250, "ok")) == b"250 ok\r\n"
    assert s.phase is Phase.WAITING
    assert s.state.cwd == "/"
    s.send(Reply(250, "ok"), cwd)


def test_an_answer_event_may_be_passed_to_send():
    s = Session()
    event = run(s, "NOOP")
    assert isinstance(event, events.Answer)
    assert s.send(event.reply, event) == b"200 NOOP ok.\r\n"
    assert s.send(event.reply, event) == b"200 NOOP ok.\r\n"


def test_authenticate_repr_hides_the_password():
    s = Session()
    code(s, "USER alice")
    auth = run(s, "PASS hunter2-s3cret")
    assert isinstance(auth, events.Authenticate)
    assert auth.password == "hunter2-s3cret"
    for text in (repr(auth), str(auth), f"{auth}", f"{auth!r}", repr([auth])):
        assert "hunter2" not in text
        assert "alice" in text


def test_events_are_frozen():
    event = events.RetrieveFile("/f", 0, True)
    with pytest.raises(AttributeError):
        event.path = "/etc/passwd"  # type: ignore[misc]


def test_default_config():
    s = Session()
    assert s.config == CoreConfig()
    assert s.transfer_outstanding is None
    retr = start(login(s), "RETR f")
    assert s.transfer_outstanding is retr
