"""The data-channel verbs of the command table: PASV/EPSV/PORT/EPRT, ABOR, transfers."""

from __future__ import annotations

from fileferry.protocol import addresses, events
from fileferry.protocol.commandtypes import Ctx, Handler, Outcome, need_data, resolve_arg
from fileferry.protocol.replies import Reply


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
        missing = need_data(ctx)
        if missing:
            return missing
        target = _strip_list_flags(arg) if fmt is not events.ListFormat.MLSD else arg
        p = resolve_arg(ctx, target or ".")
        if isinstance(p, Reply):
            return p
        return events.ListDirectory(p, fmt, ctx.state.facts, arg_given=bool(target))

    return handler


def _retr(ctx: Ctx, arg: str) -> Outcome:
    missing = need_data(ctx)
    if missing:
        return missing
    p = resolve_arg(ctx, arg)
    if isinstance(p, Reply):
        return p
    offset, ctx.state.rest = ctx.state.rest, 0
    return events.RetrieveFile(p, offset, ctx.state.ascii)


def _store(mode: events.StoreMode) -> Handler:
    def handler(ctx: Ctx, arg: str) -> Outcome:
        missing = need_data(ctx)
        if missing:
            return missing
        p = resolve_arg(ctx, arg or ".", 553)
        if isinstance(p, Reply):
            return p
        offset, ctx.state.rest = ctx.state.rest, 0
        if mode is not events.StoreMode.REPLACE:
            offset = 0
        return events.StoreFile(p, offset, mode, ctx.state.ascii)

    return handler
