"""The one declarative command table: verb → argument rule, access, help, handler.

Dispatch is ``COMMANDS[verb]``; each handler is a small pure function from
the session state and the argument to either a :class:`Reply` the core sends
itself or an :class:`Event` for the server. Handlers validate arguments and
resolve paths; they never decide policy (permissions, quotas), which needs
the account and the storage and so lives in the server.
"""

from __future__ import annotations

from collections.abc import Callable

from fileferry import paths
from fileferry.protocol import events, hashcommands, listing, tlscommands
from fileferry.protocol.commandtypes import (
    DEFAULT_CAPABILITIES,
    Arg,
    Command,
    CoreConfig,
    Ctx,
    Feature,
    Handler,
    Outcome,
    SiteCommand,
)
from fileferry.protocol.commandtypes import resolve_arg as _path
from fileferry.protocol.datacommands import (
    _abor,
    _eprt,
    _epsv,
    _listing,
    _pasv,
    _port,
    _retr,
    _store,
    _strip_list_flags,
)
from fileferry.protocol.replies import Reply, quote_path
from fileferry.protocol.state import Access

__all__ = [
    "COMMANDS",
    "DEFAULT_CAPABILITIES",
    "MAX_OFFSET",
    "SITE_COMMANDS",
    "Arg",
    "Command",
    "CoreConfig",
    "Ctx",
    "Feature",
    "Handler",
    "Outcome",
    "SiteCommand",
    "features",
    "permission",
    "site_commands",
]

#: REST offsets beyond this are refused (no file system stores more).
MAX_OFFSET = 2**63 - 1


# --- access control and session ------------------------------------------------


def _auth(ctx: Ctx, arg: str) -> Outcome:
    return tlscommands.auth(ctx.state, arg, ctx.config.tls_available)


def _pbsz(ctx: Ctx, arg: str) -> Outcome:
    return tlscommands.pbsz(ctx.state, arg)


def _prot(ctx: Ctx, arg: str) -> Outcome:
    return tlscommands.prot(ctx.state, arg, ctx.config.tls_required)


def _ccc(ctx: Ctx, arg: str) -> Outcome:
    return tlscommands.ccc(ctx.state)


def _user(ctx: Ctx, arg: str) -> Outcome:
    refusal = tlscommands.login_refusal(ctx.state, ctx.config.tls_required)
    if refusal is not None:
        return refusal
    ctx.state.pending_user = arg
    return Reply(331, "Please specify the password.")


def _pass(ctx: Ctx, arg: str) -> Outcome:
    user = ctx.state.pending_user or ""
    ctx.state.pending_user = None
    return events.Authenticate(user, arg)


def _quit(ctx: Ctx, arg: str) -> Outcome:
    return events.Quit()


def _rein(ctx: Ctx, arg: str) -> Outcome:
    return events.Reinitialize()


def _acct(ctx: Ctx, arg: str) -> Outcome:
    return Reply(202, "ACCT not needed.")


def _smnt(ctx: Ctx, arg: str) -> Outcome:
    return Reply(502, "SMNT not implemented: there is one file system per user.")


_NOOP_OK = Reply(200, "NOOP ok.")


def _noop(ctx: Ctx, arg: str) -> Outcome:
    return _NOOP_OK


def _syst(ctx: Ctx, arg: str) -> Outcome:
    return Reply(215, "UNIX Type: L8")


#: FEAT lines of the server as a whole rather than of one verb.
SERVER_FEATURES = ("TVFS", "UTF8")


def features(ctx: Ctx) -> tuple[str, ...]:
    """Exactly what FEAT advertises: every line here is something that works.

    Derived from the command table: each row's ``feature`` whose ``needs`` the
    server has, the server-wide lines, and the embedder's ``extra_features``.
    """
    config = ctx.config
    lines: list[str] = [*SERVER_FEATURES, *config.extra_features]
    for cmd in _FEATURED:
        if cmd.needs and cmd.needs not in config.capabilities:
            continue
        feature = cmd.feature
        if isinstance(feature, str):
            lines.append(feature)
        elif feature is not None:
            lines.extend(feature(ctx))
    return tuple(sorted(lines))


def _feat(ctx: Ctx, arg: str) -> Outcome:
    return Reply(211, "Features:", features(ctx))


def _opts(ctx: Ctx, arg: str) -> Outcome:
    name, _, value = arg.strip().partition(" ")
    name = name.upper()
    if name == "UTF8":
        if value.strip().upper() in ("", "ON"):
            return Reply(200, "UTF8 mode is always on.")
        return Reply(504, "UTF8 cannot be switched off.")
    if name == "MLST":
        wanted = [f.lower() for f in value.strip().split(";") if f]
        chosen = tuple(f for f in listing.ALL_FACTS if f in wanted)
        ctx.state.facts = chosen
        names = {"unix.mode": "UNIX.mode"}
        return Reply(200, "MLST OPTS " + "".join(names.get(f, f) + ";" for f in chosen))
    if name == "HASH":
        return hashcommands.opts(ctx.state, value)
    return Reply(501, "Unknown option.")


def _help(ctx: Ctx, arg: str) -> Outcome:
    verb = arg.strip().upper()
    if verb:
        cmd = COMMANDS.get(verb)
        if cmd is None:
            return Reply(502, "Unknown command.")
        return Reply(214, f"Syntax: {cmd.syntax}")
    verbs = sorted(COMMANDS)
    rows = tuple(" ".join(f"{v:<5}" for v in verbs[i : i + 8]) for i in range(0, len(verbs), 8))
    return Reply(214, "The following commands are recognized:", rows, "Help OK.")


def _site(ctx: Ctx, arg: str) -> Outcome:
    sub, _, rest = arg.strip().partition(" ")
    sub = sub.upper()
    if sub == "HELP":
        rows = (
            "HELP: show this list",
            *tuple(f"{name}: {text}" for name, text in ctx.config.site_commands),
        )
        return Reply(214, "SITE commands:", rows, "Help OK.")
    if any(name == sub for name, _ in ctx.config.site_commands):
        return events.SiteCommand(sub, rest.strip(), ctx.state.cwd)
    return Reply(501, "Unknown SITE command.")


# --- representation -------------------------------------------------------------


def _type(ctx: Ctx, arg: str) -> Outcome:
    words = arg.upper().split()
    if words in (["A"], ["A", "N"]):
        ctx.state.ascii = True
        return Reply(200, "Type set to A.")
    if words in (["I"], ["L", "8"], ["L8"]):
        ctx.state.ascii = False
        return Reply(200, "Type set to I.")
    if words and words[0] in ("A", "E", "I", "L"):
        return Reply(504, "Type not implemented for that parameter.")
    return Reply(501, "Unknown TYPE.")


def _mode(ctx: Ctx, arg: str) -> Outcome:
    m = arg.strip().upper()
    if m == "S":
        return Reply(200, "Mode set to S.")
    if m in ("B", "C", "Z"):
        return Reply(504, "Only stream mode (S) is supported.")
    return Reply(501, "Unknown MODE.")


def _stru(ctx: Ctx, arg: str) -> Outcome:
    s = arg.strip().upper()
    if s == "F":
        return Reply(200, "Structure set to F.")
    if s in ("R", "P"):
        return Reply(504, "Only file structure (F) is supported.")
    return Reply(501, "Unknown STRU.")


def _allo(ctx: Ctx, arg: str) -> Outcome:
    return Reply(202, "No storage allocation necessary.")


def _rest(ctx: Ctx, arg: str) -> Outcome:
    text = arg.strip()
    # isdigit() alone admits "²" (int() raises) and Arabic-Indic digits; the length
    # bound keeps int() clear of its digit limit whatever the line cap.
    digits = text.lstrip("0") or "0"
    if not (text.isascii() and text.isdigit()) or len(digits) > 19 or int(digits) > MAX_OFFSET:
        return Reply(501, "REST needs a non-negative byte offset.")
    ctx.state.rest = int(digits)
    return Reply(350, f"Restarting at {ctx.state.rest}. Send STOR or RETR.")


# --- navigation and file management ---------------------------------------------


def _pwd(ctx: Ctx, arg: str) -> Outcome:
    return Reply(257, f"{quote_path(ctx.state.cwd)} is the current directory.")


def _cwd(ctx: Ctx, arg: str) -> Outcome:
    p = _path(ctx, arg)
    return p if isinstance(p, Reply) else events.ChangeDirectory(p)


def _cdup(ctx: Ctx, arg: str) -> Outcome:
    return events.ChangeDirectory(paths.split(ctx.state.cwd)[0])


def _path_event(make: Callable[[str], events.Event], code: int = 550) -> Handler:
    def handler(ctx: Ctx, arg: str) -> Outcome:
        p = _path(ctx, arg, code)
        return p if isinstance(p, Reply) else make(p)

    return handler


def _rnto(ctx: Ctx, arg: str) -> Outcome:
    src = ctx.state.rename_from
    if src is None:
        return Reply(503, "RNFR required first.")
    p = _path(ctx, arg, 553)
    if isinstance(p, Reply):
        ctx.state.rename_from = None  # a refused RNTO ends the rename, as any reply does
        return p
    return events.RenameTo(src, p)


def _mdtm(ctx: Ctx, arg: str) -> Outcome:
    # Some clients set times with "MDTM YYYYMMDDHHMMSS path" (pre-MFMT practice).
    stamp, _, rest = arg.partition(" ")
    if rest and len(stamp) >= 14 and stamp[:14].isdigit():
        return _mfmt(ctx, arg)
    p = _path(ctx, arg)
    return p if isinstance(p, Reply) else events.ModificationTime(p)


def _mfmt(ctx: Ctx, arg: str) -> Outcome:
    stamp, _, name = arg.partition(" ")
    if not name:
        return Reply(501, "Syntax: MFMT YYYYMMDDHHMMSS path")
    try:
        when = listing.parse_mdtm(stamp)
    except ValueError:
        return Reply(501, "Bad time value; use YYYYMMDDHHMMSS.")
    p = _path(ctx, name)
    return p if isinstance(p, Reply) else events.SetModificationTime(p, when)


def _stat(ctx: Ctx, arg: str) -> Outcome:
    if not arg.strip():
        return events.Status(None)
    p = _path(ctx, _strip_list_flags(arg) or ".")
    return p if isinstance(p, Reply) else events.Status(p)


def _mlst(ctx: Ctx, arg: str) -> Outcome:
    p = _path(ctx, arg or ".")
    return p if isinstance(p, Reply) else events.MachineListFile(p, ctx.state.facts)


def _avbl(ctx: Ctx, arg: str) -> Outcome:
    p = _path(ctx, arg or ".")
    return p if isinstance(p, Reply) else events.AvailableSpace(p)


# --- integrity: HASH, RANG and the X* digests (see hashcommands) ----------------


def _hash(ctx: Ctx, arg: str) -> Outcome:
    return hashcommands.hash_file(ctx.state, arg)


def _rang(ctx: Ctx, arg: str) -> Outcome:
    return hashcommands.rang(ctx.state, arg)


def _legacy_hash(verb: str) -> Handler:
    def handler(ctx: Ctx, arg: str) -> Outcome:
        return hashcommands.legacy(ctx.state, verb, arg)

    return handler


def _tls_feature(*lines: str) -> Callable[[Ctx], tuple[str, ...]]:
    def feature(ctx: Ctx) -> tuple[str, ...]:
        return lines if ctx.config.tls_available else ()

    return feature


def _mlst_feature(ctx: Ctx) -> tuple[str, ...]:
    return (listing.feat_mlst(ctx.state.facts),)


def _hash_feature(ctx: Ctx) -> tuple[str, ...]:
    return hashcommands.features(ctx.state.hash_algorithm)[:1]


_A, _R, _O, _N = Access, Arg.REQUIRED, Arg.OPTIONAL, Arg.NONE


def _legacy_row(verb: str) -> Command:
    syntax = f"{verb} <path> [<start> <end>]"
    return Command(verb, _A.LOGIN, _R, syntax, _legacy_hash(verb), "r", verb)


_TIME, _SPACE = "set_mtime", "available_space"

# Permission letters (users.base): e=cwd, l=list, r=retrieve, a=append,
# d=delete, f=rename, m=mkdir, w=store, M=chmod, T=set mtime, X=SITE EXEC.
# fmt: off
_ROWS: tuple[Command, ...] = (
    Command("AUTH", _A.FREE, _R, "AUTH TLS", _auth, feature=_tls_feature("AUTH TLS", "AUTH SSL")),
    Command("PBSZ", _A.FREE, _R, "PBSZ 0", _pbsz, feature=_tls_feature("PBSZ")),
    Command("PROT", _A.FREE, _R, "PROT {C|P}", _prot, feature=_tls_feature("PROT")),
    Command("CCC", _A.FREE, _N, "CCC", _ccc),
    Command("USER", _A.USER, _R, "USER <name>", _user),
    Command("PASS", _A.PASS, _O, "PASS <password>", _pass),
    Command("ACCT", _A.FREE, _O, "ACCT <account>", _acct),
    Command("QUIT", _A.QUIT, _N, "QUIT", _quit),
    Command("REIN", _A.FREE, _N, "REIN", _rein),
    Command("SMNT", _A.LOGIN, _O, "SMNT <path>", _smnt),
    Command("NOOP", _A.FREE, _N, "NOOP", _noop),
    Command("SYST", _A.FREE, _N, "SYST", _syst),
    Command("FEAT", _A.FREE, _N, "FEAT", _feat),
    Command("OPTS", _A.FREE, _R, "OPTS <option> [value]", _opts),
    Command("HELP", _A.FREE, _O, "HELP [command]", _help),
    Command("SITE", _A.LOGIN, _R, "SITE <command> [args]", _site),
    Command("TYPE", _A.FREE, _R, "TYPE {A|I|L 8}", _type),
    Command("MODE", _A.FREE, _R, "MODE S", _mode),
    Command("STRU", _A.FREE, _R, "STRU F", _stru),
    Command("ALLO", _A.LOGIN, _O, "ALLO <bytes>", _allo),
    Command("REST", _A.LOGIN, _R, "REST <offset>", _rest, feature="REST STREAM"),
    Command("PWD", _A.LOGIN, _N, "PWD", _pwd),
    Command("XPWD", _A.LOGIN, _N, "XPWD", _pwd),
    Command("CWD", _A.LOGIN, _R, "CWD <path>", _cwd, "e"),
    Command("XCWD", _A.LOGIN, _R, "XCWD <path>", _cwd, "e"),
    Command("CDUP", _A.LOGIN, _N, "CDUP", _cdup, "e"),
    Command("XCUP", _A.LOGIN, _N, "XCUP", _cdup, "e"),
    Command("MKD", _A.LOGIN, _R, "MKD <path>", _path_event(events.MakeDirectory, 553), "m"),
    Command("XMKD", _A.LOGIN, _R, "XMKD <path>", _path_event(events.MakeDirectory, 553), "m"),
    Command("RMD", _A.LOGIN, _R, "RMD <path>", _path_event(events.RemoveDirectory), "d"),
    Command("XRMD", _A.LOGIN, _R, "XRMD <path>", _path_event(events.RemoveDirectory), "d"),
    Command("DELE", _A.LOGIN, _R, "DELE <path>", _path_event(events.DeleteFile), "d"),
    Command("RNFR", _A.LOGIN, _R, "RNFR <path>", _path_event(events.RenameFrom), "f"),
    Command("RNTO", _A.LOGIN, _R, "RNTO <path>", _rnto, "f"),
    Command("SIZE", _A.LOGIN, _R, "SIZE <path>", _path_event(events.FileSize), "l", "SIZE"),
    Command("MDTM", _A.LOGIN, _R, "MDTM <path>", _mdtm, "l", "MDTM"),
    Command("MFMT", _A.LOGIN, _R, "MFMT YYYYMMDDHHMMSS <path>", _mfmt, "T", "MFMT", _TIME),
    Command("STAT", _A.OUT_OF_BAND, _O, "STAT [path]", _stat, "l"),
    Command("MLST", _A.LOGIN, _O, "MLST [path]", _mlst, "l", _mlst_feature),
    Command("AVBL", _A.LOGIN, _O, "AVBL [path]", _avbl, "l", "AVBL", _SPACE),
    Command("PASV", _A.LOGIN, _N, "PASV", _pasv),
    Command("EPSV", _A.LOGIN, _O, "EPSV [1|2|ALL]", _epsv, feature="EPSV"),
    Command("PORT", _A.LOGIN, _R, "PORT h1,h2,h3,h4,p1,p2", _port),
    Command("EPRT", _A.LOGIN, _R, "EPRT |proto|addr|port|", _eprt, feature="EPRT"),
    Command("ABOR", _A.OUT_OF_BAND, _N, "ABOR", _abor),
    Command("LIST", _A.LOGIN, _O, "LIST [path]", _listing(events.ListFormat.LIST), "l"),
    Command("NLST", _A.LOGIN, _O, "NLST [path]", _listing(events.ListFormat.NLST), "l"),
    Command("MLSD", _A.LOGIN, _O, "MLSD [path]", _listing(events.ListFormat.MLSD), "l"),
    Command("RETR", _A.LOGIN, _R, "RETR <path>", _retr, "r"),
    Command("STOR", _A.LOGIN, _R, "STOR <path>", _store(events.StoreMode.REPLACE), "w"),
    Command("APPE", _A.LOGIN, _R, "APPE <path>", _store(events.StoreMode.APPEND), "a"),
    Command("STOU", _A.LOGIN, _O, "STOU [name]", _store(events.StoreMode.UNIQUE), "w"),
    Command("HASH", _A.LOGIN, _R, "HASH <path>", _hash, "r", _hash_feature),
    Command("RANG", _A.LOGIN, _R, "RANG <start> <end>", _rang),
    _legacy_row("XCRC"),
    _legacy_row("XMD5"),
    _legacy_row("XSHA1"),
    _legacy_row("XSHA256"),
    _legacy_row("XSHA512"),
)
# fmt: on

COMMANDS: dict[str, Command] = {cmd.verb: cmd for cmd in _ROWS}
_FEATURED = tuple(cmd for cmd in _ROWS if cmd.feature is not None)

#: The SITE subcommands the server implements, in SITE HELP order.
SITE_COMMANDS: dict[str, SiteCommand] = {
    s.name: s
    for s in (
        SiteCommand("QUOTA", "show your quota and what you use of it"),
        SiteCommand(
            "CHMOD", "change a file's permission bits (SITE CHMOD <mode> <path>)", "M", "set_mode"
        ),
        SiteCommand(
            "EXEC",
            "run a command the operator allowed (SITE EXEC [name [args]])",
            "X",
            optional=True,
        ),
    )
}


def permission(verb: str) -> str:
    """The permission letter the command table gives ``verb`` (or a SITE subcommand)."""
    cmd = COMMANDS.get(verb)
    if cmd is not None:
        return cmd.permission
    return SITE_COMMANDS[verb].permission


def site_commands(
    capabilities: frozenset[str], enabled: frozenset[str] = frozenset()
) -> tuple[tuple[str, str], ...]:
    """``CoreConfig.site_commands`` for a server: the SITE rows it can offer.

    A row is offered if the server has what it ``needs`` and, if it is
    ``optional``, the operator named it in ``enabled``.
    """
    return tuple(
        (s.name, s.help)
        for s in SITE_COMMANDS.values()
        if (not s.needs or s.needs in capabilities) and (not s.optional or s.name in enabled)
    )
