"""The one declarative command table: verb → argument rule, access, help, handler.

Dispatch is ``COMMANDS[verb]``; each handler is a small pure function from
the session state and the argument to either a :class:`Reply` the core sends
itself or an :class:`Event` for the server. Handlers validate arguments and
resolve paths; they never decide policy (permissions, quotas), which needs
the account and the storage and so lives in the server.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from fileferry import paths
from fileferry.protocol import addresses, events, hashcommands, listing, tlscommands
from fileferry.protocol.replies import Reply, quote_path
from fileferry.protocol.state import Access, DataMode, SessionState

#: REST offsets beyond this are refused (no file system stores more).
MAX_OFFSET = 2**63 - 1


class Arg(enum.Enum):
    NONE = "none"
    OPTIONAL = "optional"
    REQUIRED = "required"


@dataclass(frozen=True, slots=True)
class CoreConfig:
    """What the core needs to know of the server's configuration."""

    #: FEAT lines beyond the built-in ones (``AUTH TLS`` when TLS is set up...).
    extra_features: tuple[str, ...] = ()
    #: SITE subcommands the server handles, with their help text.
    site_commands: tuple[tuple[str, str], ...] = ()
    max_line: int = 4200
    #: The server has a certificate: AUTH TLS can succeed.
    tls_available: bool = False
    #: Refuse logins and transfers that are not protected by TLS.
    tls_required: bool = False


@dataclass(slots=True)
class Ctx:
    state: SessionState
    config: CoreConfig = field(default_factory=CoreConfig)


Outcome = Reply | events.Event
Handler = Callable[[Ctx, str], Outcome]


@dataclass(frozen=True, slots=True)
class Command:
    verb: str
    access: Access
    arg: Arg
    syntax: str
    handler: Handler


def _path(ctx: Ctx, arg: str, code: int = 550) -> str | Reply:
    try:
        return paths.resolve(ctx.state.cwd, arg)
    except paths.PathError as exc:
        return Reply(code, str(exc))


def _need_data(ctx: Ctx) -> Reply | None:
    ranged = hashcommands.transfer_refusal(ctx.state)
    if ranged is not None:
        return ranged
    if ctx.state.data_mode is DataMode.NONE:
        return Reply(425, "Use PORT, EPRT, PASV or EPSV first.")
    return tlscommands.data_refusal(ctx.state, ctx.config.tls_required)


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


def _noop(ctx: Ctx, arg: str) -> Outcome:
    return Reply(200, "NOOP ok.")


def _syst(ctx: Ctx, arg: str) -> Outcome:
    return Reply(215, "UNIX Type: L8")


def features(ctx: Ctx) -> tuple[str, ...]:
    """Exactly what FEAT advertises: every line here is something that works."""
    built_in = (
        "EPRT",
        "EPSV",
        "MDTM",
        "MFMT",
        listing.feat_mlst(ctx.state.facts),
        "REST STREAM",
        "SIZE",
        "TVFS",
        "UTF8",
        *hashcommands.features(ctx.state.hash_algorithm),
    )
    tls = tlscommands.FEATURES if ctx.config.tls_available else ()
    return tuple(sorted(built_in + tls + ctx.config.extra_features))


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


# --- data channel -----------------------------------------------------------------


def _pasv(ctx: Ctx, arg: str) -> Outcome:
    if ctx.state.epsv_all:
        return Reply(503, "EPSV ALL in effect: use EPSV.")
    return events.EnterPassive(extended=False)


def _epsv(ctx: Ctx, arg: str) -> Outcome:
    try:
        proto = addresses.parse_epsv(arg)
    except addresses.AddressError as exc:
        return Reply(exc.reply_code, str(exc))
    if proto == "ALL":
        ctx.state.epsv_all = True
        return Reply(200, "EPSV ALL ok.")
    return events.EnterPassive(extended=True, protocol=proto if isinstance(proto, int) else None)


def _port(ctx: Ctx, arg: str) -> Outcome:
    if ctx.state.epsv_all:
        return Reply(503, "EPSV ALL in effect: use EPSV.")
    try:
        hp = addresses.parse_port(arg)
    except addresses.AddressError as exc:
        return Reply(exc.reply_code, str(exc))
    return events.EnterActive(hp.host, hp.port, extended=False)


def _eprt(ctx: Ctx, arg: str) -> Outcome:
    if ctx.state.epsv_all:
        return Reply(503, "EPSV ALL in effect: use EPSV.")
    try:
        hp = addresses.parse_eprt(arg)
    except addresses.AddressError as exc:
        return Reply(exc.reply_code, str(exc))
    return events.EnterActive(hp.host, hp.port, extended=True)


def _abor(ctx: Ctx, arg: str) -> Outcome:
    return events.Abort()


def _is_flag(text: str) -> bool:
    return text.isascii() and text.isalnum()


def _strip_list_flags(arg: str) -> str:
    """Drop leading ``ls``-style flags (``-a``, ``-la``) that clients send to LIST."""
    words = arg.split(" ")
    while words and len(words[0]) > 1 and words[0][0] == "-" and _is_flag(words[0][1:]):
        words.pop(0)
    return " ".join(words).strip()


def _listing(fmt: events.ListFormat) -> Handler:
    def handler(ctx: Ctx, arg: str) -> Outcome:
        missing = _need_data(ctx)
        if missing:
            return missing
        target = _strip_list_flags(arg) if fmt is not events.ListFormat.MLSD else arg
        p = _path(ctx, target or ".")
        if isinstance(p, Reply):
            return p
        return events.ListDirectory(p, fmt, ctx.state.facts, arg_given=bool(target))

    return handler


def _retr(ctx: Ctx, arg: str) -> Outcome:
    missing = _need_data(ctx)
    if missing:
        return missing
    p = _path(ctx, arg)
    if isinstance(p, Reply):
        return p
    offset, ctx.state.rest = ctx.state.rest, 0
    return events.RetrieveFile(p, offset, ctx.state.ascii)


def _store(mode: events.StoreMode) -> Handler:
    def handler(ctx: Ctx, arg: str) -> Outcome:
        missing = _need_data(ctx)
        if missing:
            return missing
        p = _path(ctx, arg or ".", 553)
        if isinstance(p, Reply):
            return p
        offset, ctx.state.rest = ctx.state.rest, 0
        if mode is not events.StoreMode.REPLACE:
            offset = 0
        return events.StoreFile(p, offset, mode, ctx.state.ascii)

    return handler


# --- integrity: HASH, RANG and the X* digests (see hashcommands) ----------------


def _hash(ctx: Ctx, arg: str) -> Outcome:
    return hashcommands.hash_file(ctx.state, arg)


def _rang(ctx: Ctx, arg: str) -> Outcome:
    return hashcommands.rang(ctx.state, arg)


def _legacy_hash(verb: str) -> Handler:
    def handler(ctx: Ctx, arg: str) -> Outcome:
        return hashcommands.legacy(ctx.state, verb, arg)

    return handler


_A, _R, _O, _N = Access, Arg.REQUIRED, Arg.OPTIONAL, Arg.NONE


def _table(*rows: tuple[str, Access, Arg, str, Handler]) -> dict[str, Command]:
    return {row[0]: Command(*row) for row in rows}


COMMANDS: dict[str, Command] = _table(
    ("AUTH", _A.FREE, _R, "AUTH TLS", _auth),
    ("PBSZ", _A.FREE, _R, "PBSZ 0", _pbsz),
    ("PROT", _A.FREE, _R, "PROT {C|P}", _prot),
    ("CCC", _A.FREE, _N, "CCC", _ccc),
    ("USER", _A.USER, _R, "USER <name>", _user),
    ("PASS", _A.PASS, _O, "PASS <password>", _pass),
    ("ACCT", _A.FREE, _O, "ACCT <account>", _acct),
    ("QUIT", _A.QUIT, _N, "QUIT", _quit),
    ("REIN", _A.FREE, _N, "REIN", _rein),
    ("SMNT", _A.LOGIN, _O, "SMNT <path>", _smnt),
    ("NOOP", _A.FREE, _N, "NOOP", _noop),
    ("SYST", _A.FREE, _N, "SYST", _syst),
    ("FEAT", _A.FREE, _N, "FEAT", _feat),
    ("OPTS", _A.FREE, _R, "OPTS <option> [value]", _opts),
    ("HELP", _A.FREE, _O, "HELP [command]", _help),
    ("SITE", _A.LOGIN, _R, "SITE <command> [args]", _site),
    ("TYPE", _A.FREE, _R, "TYPE {A|I|L 8}", _type),
    ("MODE", _A.FREE, _R, "MODE S", _mode),
    ("STRU", _A.FREE, _R, "STRU F", _stru),
    ("ALLO", _A.LOGIN, _O, "ALLO <bytes>", _allo),
    ("REST", _A.LOGIN, _R, "REST <offset>", _rest),
    ("PWD", _A.LOGIN, _N, "PWD", _pwd),
    ("XPWD", _A.LOGIN, _N, "XPWD", _pwd),
    ("CWD", _A.LOGIN, _R, "CWD <path>", _cwd),
    ("XCWD", _A.LOGIN, _R, "XCWD <path>", _cwd),
    ("CDUP", _A.LOGIN, _N, "CDUP", _cdup),
    ("XCUP", _A.LOGIN, _N, "XCUP", _cdup),
    ("MKD", _A.LOGIN, _R, "MKD <path>", _path_event(events.MakeDirectory, 553)),
    ("XMKD", _A.LOGIN, _R, "XMKD <path>", _path_event(events.MakeDirectory, 553)),
    ("RMD", _A.LOGIN, _R, "RMD <path>", _path_event(events.RemoveDirectory)),
    ("XRMD", _A.LOGIN, _R, "XRMD <path>", _path_event(events.RemoveDirectory)),
    ("DELE", _A.LOGIN, _R, "DELE <path>", _path_event(events.DeleteFile)),
    ("RNFR", _A.LOGIN, _R, "RNFR <path>", _path_event(events.RenameFrom)),
    ("RNTO", _A.LOGIN, _R, "RNTO <path>", _rnto),
    ("SIZE", _A.LOGIN, _R, "SIZE <path>", _path_event(events.FileSize)),
    ("MDTM", _A.LOGIN, _R, "MDTM <path>", _mdtm),
    ("MFMT", _A.LOGIN, _R, "MFMT YYYYMMDDHHMMSS <path>", _mfmt),
    ("STAT", _A.OUT_OF_BAND, _O, "STAT [path]", _stat),
    ("MLST", _A.LOGIN, _O, "MLST [path]", _mlst),
    ("AVBL", _A.LOGIN, _O, "AVBL [path]", _avbl),
    ("PASV", _A.LOGIN, _N, "PASV", _pasv),
    ("EPSV", _A.LOGIN, _O, "EPSV [1|2|ALL]", _epsv),
    ("PORT", _A.LOGIN, _R, "PORT h1,h2,h3,h4,p1,p2", _port),
    ("EPRT", _A.LOGIN, _R, "EPRT |proto|addr|port|", _eprt),
    ("ABOR", _A.OUT_OF_BAND, _N, "ABOR", _abor),
    ("LIST", _A.LOGIN, _O, "LIST [path]", _listing(events.ListFormat.LIST)),
    ("NLST", _A.LOGIN, _O, "NLST [path]", _listing(events.ListFormat.NLST)),
    ("MLSD", _A.LOGIN, _O, "MLSD [path]", _listing(events.ListFormat.MLSD)),
    ("RETR", _A.LOGIN, _R, "RETR <path>", _retr),
    ("STOR", _A.LOGIN, _R, "STOR <path>", _store(events.StoreMode.REPLACE)),
    ("APPE", _A.LOGIN, _R, "APPE <path>", _store(events.StoreMode.APPEND)),
    ("STOU", _A.LOGIN, _O, "STOU [name]", _store(events.StoreMode.UNIQUE)),
    ("HASH", _A.LOGIN, _R, "HASH <path>", _hash),
    ("RANG", _A.LOGIN, _R, "RANG <start> <end>", _rang),
    ("XCRC", _A.LOGIN, _R, "XCRC <path> [<start> <end>]", _legacy_hash("XCRC")),
    ("XMD5", _A.LOGIN, _R, "XMD5 <path> [<start> <end>]", _legacy_hash("XMD5")),
    ("XSHA1", _A.LOGIN, _R, "XSHA1 <path> [<start> <end>]", _legacy_hash("XSHA1")),
    ("XSHA256", _A.LOGIN, _R, "XSHA256 <path> [<start> <end>]", _legacy_hash("XSHA256")),
    ("XSHA512", _A.LOGIN, _R, "XSHA512 <path> [<start> <end>]", _legacy_hash("XSHA512")),
)
