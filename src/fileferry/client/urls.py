"""``ftp://`` and ``ftps://`` URLs, and where the password comes from.

Paths in a URL are relative to the login directory, as RFC 1738 and curl
have it: ``ftp://host/a/b`` is ``a/b`` seen from where the server puts the
user, and ``ftp://host//etc`` (or ``%2Fetc``) is the absolute ``/etc``. On
servers that jail users (fileferry, pyftpdlib, vsftpd with chroot) both
read the same.

Passwords never need to go on the command line, where shell history and
``ps`` would show them. The order is: a password the user did put in the URL,
then ``FILEFERRY_PASSWORD``, then ``~/.netrc`` (or the file ``$NETRC`` names),
then a prompt on the terminal. Without a user name in the URL or netrc the
login is anonymous.
"""

from __future__ import annotations

import netrc
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from urllib.parse import quote, unquote, urlsplit

from fileferry.client.errors import LoginRefused, UsageError

SCHEMES = {"ftp": 21, "ftps": 21}
ANONYMOUS = "anonymous"
ANONYMOUS_PASSWORD = "anonymous@"
PASSWORD_VARIABLE = "FILEFERRY_PASSWORD"


@dataclass(frozen=True, slots=True)
class FTPURL:
    scheme: str
    host: str
    port: int
    user: str | None = None
    password: str | None = None
    #: Remote path as sent to the server; ``""`` is the login directory.
    path: str = ""
    #: The URL ended in ``/``: it names a directory.
    directory: bool = False

    @property
    def tls(self) -> bool:
        return self.scheme == "ftps"

    def with_path(self, path: str, directory: bool = False) -> FTPURL:
        return replace(self, path=path, directory=directory)

    def __str__(self) -> str:
        """The URL without its password, fit for messages and logs."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{quote(self.user, safe='')}@" if self.user else ""
        port = "" if self.port == SCHEMES[self.scheme] else f":{self.port}"
        path = quote(self.path, safe="/", errors="surrogateescape")
        tail = "/" if self.directory and path and path != "/" else ""
        return f"{self.scheme}://{user}{host}{port}/{path}{tail}"


def is_url(text: str) -> bool:
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.lower() in SCHEMES


def parse_url(text: str) -> FTPURL:
    """Parse an ``ftp://``/``ftps://`` URL; ``UsageError`` says what is wrong with it."""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"bad URL {text!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise UsageError(f"bad URL {text!r}: use ftp:// or ftps://")
    if not parts.hostname:
        raise UsageError(f"bad URL {text!r}: no host name")
    if parts.query or parts.fragment:
        raise UsageError(f"bad URL {text!r}: FTP URLs take no ?query or #fragment")
    raw = parts.path[1:] if parts.path.startswith("/") else parts.path
    path = unquote(raw, errors="surrogateescape")
    if any(c in path for c in "\r\n\0"):
        raise UsageError(f"bad URL {text!r}: control characters in the path")
    directory = path == "" or path.endswith("/")
    if path != "/":
        path = path.rstrip("/")
    return FTPURL(
        scheme=scheme,
        host=parts.hostname,
        port=port or SCHEMES[scheme],
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        path=path,
        directory=directory,
    )


@dataclass(frozen=True, slots=True)
class Credentials:
    user: str
    password: str = ""

    def __repr__(self) -> str:  # never let a password reach a traceback or log
        return f"Credentials(user={self.user!r}, password=<hidden>)"


def _netrc_entry(host: str, environ: Mapping[str, str]) -> tuple[str, str] | None:
    path = environ.get("NETRC") or os.path.join(environ.get("HOME") or "~", ".netrc")
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        return None
    try:
        found = netrc.netrc(path).authenticators(host)
    except (netrc.NetrcParseError, OSError) as exc:
        raise UsageError(f"cannot use {path}: {exc}") from None
    if found is None:
        return None
    login, _, password = found
    return login or "", password or ""


def resolve_credentials(
    url: FTPURL,
    *,
    password: str | None = None,
    environ: Mapping[str, str] | None = None,
    prompt: Callable[[str], str] | None = None,
) -> Credentials:
    """Who to log in as, and with what password (see the module docstring for the order).

    ``password`` (from a program using the API) comes before everything else.
    ``prompt`` is called only for a named user with no password found
    elsewhere; without one that is a ``LoginRefused``.
    """
    env = os.environ if environ is None else environ
    entry = _netrc_entry(url.host, env)
    user = url.user
    if user is None and entry is not None and entry[0]:
        user = entry[0]
    if user is None or user.lower() in (ANONYMOUS, "ftp"):
        given = password or url.password or env.get(PASSWORD_VARIABLE)
        return Credentials(user or ANONYMOUS, given or ANONYMOUS_PASSWORD)
    for candidate in (password, url.password, env.get(PASSWORD_VARIABLE)):
        if candidate is not None:
            return Credentials(user, candidate)
    if entry is not None and entry[0] in ("", user):
        return Credentials(user, entry[1])
    if prompt is not None:
        return Credentials(user, prompt(f"Password for {user}@{url.host}: "))
    raise LoginRefused(
        f"no password for {user}@{url.host}: set {PASSWORD_VARIABLE}, add it to ~/.netrc,"
        " or run in a terminal to be asked"
    )
