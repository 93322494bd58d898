"""The shapes of the command table: rows, the core's configuration, handler types.

Kept apart from the table itself (:mod:`fileferry.protocol.commands`) so that
the modules holding groups of verb handlers can share them without a cycle.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from fileferry import paths
from fileferry.protocol import events, hashcommands, tlscommands
from fileferry.protocol.replies import Reply
from fileferry.protocol.state import Access, DataMode, SessionState


class Arg(enum.Enum):
    NONE = "none"
    OPTIONAL = "optional"
    REQUIRED = "required"


#: The capabilities the core assumes of the server when told nothing else:
#: those of a local-disk server (mtimes and modes can be set).
DEFAULT_CAPABILITIES = frozenset({"set_mtime", "set_mode"})


@dataclass(frozen=True, slots=True)
class CoreConfig:
    """What the core needs to know of the server's configuration."""

    #: FEAT lines beyond those of the command table (an embedder's extensions).
    extra_features: tuple[str, ...] = ()
    #: SITE subcommands the server handles, with their help text
    #: (:func:`site_commands` derives them from :data:`SITE_COMMANDS`).
    site_commands: tuple[tuple[str, str], ...] = ()
    max_line: int = 4200
    #: The server has a certificate: AUTH TLS can succeed.
    tls_available: bool = False
    #: Refuse logins and transfers that are not protected by TLS.
    tls_required: bool = False
    #: What the server behind the core can do: the storage's capabilities
    #: (``set_mtime``, ``set_mode``) and server extensions (``available_space``).
    #: A command row's FEAT line is advertised only if its ``needs`` is here.
    capabilities: frozenset[str] = DEFAULT_CAPABILITIES


@dataclass(slots=True)
class Ctx:
    state: SessionState
    config: CoreConfig = field(default_factory=CoreConfig)


Outcome = Reply | events.Event
Handler = Callable[[Ctx, str], Outcome]
#: A row's FEAT lines: fixed text, or computed from the session (``MLST``, ``HASH``).
Feature = str | Callable[[Ctx], tuple[str, ...]] | None


@dataclass(frozen=True, slots=True)
class Command:
    """One row of the command table: everything fileferry knows about a verb."""

    verb: str
    access: Access
    arg: Arg
    #: The help text (``HELP verb`` and the 501 of a missing argument).
    syntax: str
    handler: Handler
    #: The account permission letter the server checks (see ``users.base``), or "".
    permission: str = ""
    #: What FEAT advertises for this verb, if anything.
    feature: Feature = None
    #: The capability (``CoreConfig.capabilities``) the FEAT line depends on, or "".
    needs: str = ""


@dataclass(frozen=True, slots=True)
class SiteCommand:
    """One SITE subcommand: its help line, permission and what it depends on."""

    name: str
    help: str
    permission: str = ""
    #: The capability it needs to be offered at all, or "".
    needs: str = ""
    #: Offered only when the operator switched it on (SITE EXEC).
    optional: bool = False


def resolve_arg(ctx: Ctx, arg: str, code: int = 550) -> str | Reply:
    """The absolute virtual path ``arg`` names, or the reply refusing it."""
    try:
        return paths.resolve(ctx.state.cwd, arg)
    except paths.PathError as exc:
        return Reply(code, str(exc))


def need_data(ctx: Ctx) -> Reply | None:
    """Why a transfer cannot start now (no PORT/PASV, TLS policy, RANG), or None."""
    ranged = hashcommands.transfer_refusal(ctx.state)
    if ranged is not None:
        return ranged
    if ctx.state.data_mode is DataMode.NONE:
        return Reply(425, "Use PORT, EPRT, PASV or EPSV first.")
    return tlscommands.data_refusal(ctx.state, ctx.config.tls_required)
