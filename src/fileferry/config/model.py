"""The configuration tree: nested, typed, frozen, and the one description of every setting.

Each leaf is a :func:`~fileferry.config.describe.setting` whose flat key is
the contract with operators (``idle_timeout`` in a file, ``FILEFERRY_IDLE_TIMEOUT``,
``--idle-timeout``); the nesting is for the code that reads it
(``config.limits.sessions.idle_timeout``) and for the nested TOML form
(``[limits.sessions] idle_timeout = 60``). The TOML keys, the environment
variables and the ``serve`` flags are all generated from these classes
(:mod:`fileferry.config.schema`, :mod:`fileferry.config.flags`).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from typing import Literal

from fileferry.config.describe import setting
from fileferry.config.hooks import HookConfig
from fileferry.config.hostport import parse_host_port, parse_listen_address
from fileferry.config.parsers import parse_node_name
from fileferry.errors import ConfigError
from fileferry.users import fields as account_fields

LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["text", "json"]
FsCalls = Literal["auto", "inline", "thread"]
LOG_LEVELS: tuple[str, ...] = LogLevel.__args__  # type: ignore[attr-defined]
FS_CALLS: tuple[str, ...] = FsCalls.__args__  # type: ignore[attr-defined]

_TLS = "FTPS (RFC 4217)"
_LIMITS = "limits"
_PROXY = "behind a load balancer"
_DAY = 86400.0
_OBSERVE = "logs and metrics"


@dataclass(frozen=True, slots=True)
class UserConfig:
    name: str
    password_hash: str
    #: Host directory; ``None`` means the served directory.
    home: str | None = None
    write: bool = True
    #: May run the operator's SITE EXEC commands (never implied by ``write``).
    site_exec: bool = False
    #: Further ``Account`` fields from the ``[[user]]`` table (quotas, rates...),
    #: already checked by :mod:`fileferry.users.fields`.
    account_fields: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True, slots=True)
class SiteExecCommand:
    """One operator-defined command for SITE EXEC; never run through a shell."""

    name: str
    argv: tuple[str, ...]
    #: A regular expression per client argument position; no pattern, no argument.
    arg_patterns: tuple[str, ...] = ()
    timeout: float = 10.0
    max_output: int = 64 * 1024
    description: str = ""


@dataclass(frozen=True, slots=True)
class StorageConfig:
    """Where files live. ``root`` selects the backend by its scheme (a plain
    path is local disk; see :mod:`fileferry.backends`)."""

    root: str = setting(".", "root")
    fsync_uploads: bool = setting(False, "fsync_uploads", "fsync before answering 226")
    #: Where local-disk metadata calls (open, stat, rename) run: "inline" on the
    #: event loop, "thread" in the pool, "auto" inline on local file systems
    #: and in the pool on network ones (see storage/local.py).
    fs_calls: FsCalls = setting(
        "auto",
        "fs_calls",
        "where local-disk metadata calls run: auto (inline on local file systems, "
        "a thread on network ones), inline, thread (auto)",
    )
    #: Hidden temp files no upload is using any more (a crash's leftovers)
    #: are deleted once this old, at start and periodically; one in use is
    #: never touched, whatever its age (see storage/localsweep.py).
    temp_max_age: float = setting(
        3600.0,
        "temp_max_age",
        "delete temp files of dead uploads once this old (3600)",
        metavar="SECONDS",
        low=0,
        high=365 * _DAY,
        unit="seconds",
    )
    #: Interrupted uploads keep what they received, to be resumed (see
    #: storage/localpartial.py).
    resumable_uploads: bool = setting(
        False,
        "resumable_uploads",
        "keep interrupted uploads as hidden partials that SIZE + APPE/REST resume",
    )
    #: A kept partial nobody resumed is deleted once its last write is this old.
    partial_max_age: float = setting(
        7 * _DAY,
        "partial_max_age",
        "with --resumable-uploads: delete partials not resumed for this long (604800)",
        metavar="SECONDS",
        low=0,
        high=365 * _DAY,
        unit="seconds",
    )


@dataclass(frozen=True, slots=True)
class S3Config:
    """How to reach the object store of ``s3://`` locations (``[s3]`` in TOML).

    Anything left unset comes from the standard AWS variables
    (``AWS_ENDPOINT_URL``, ``AWS_REGION``, ``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_ALLOW_HTTP``). The
    secret key is only ever read from a file or the environment, so it is in
    no config file, flag or printout.
    """

    endpoint: str | None = setting(
        None, "s3_endpoint", "S3 endpoint URL (default: AWS_ENDPOINT_URL, or AWS)", metavar="URL"
    )
    region: str | None = setting(
        None, "s3_region", "S3 region (default: AWS_REGION or us-east-1)", metavar="REGION"
    )
    allow_http: bool | None = setting(
        None, "s3_allow_http", "allow a plain http:// S3 endpoint (default: AWS_ALLOW_HTTP)"
    )
    access_key_id: str | None = setting(
        None, "s3_access_key_id", "S3 access key id (default: AWS_ACCESS_KEY_ID)", metavar="ID"
    )
    secret_access_key_file: str | None = setting(
        None,
        "s3_secret_access_key_file",
        "file holding the S3 secret key (default: AWS_SECRET_ACCESS_KEY)",
        metavar="PATH",
    )


@dataclass(frozen=True, slots=True)
class UserStoreConfig:
    """The account database ``fileferry user`` manages; ``db`` selects the backend
    by its scheme (a plain path is SQLite). ``None``: only static users."""

    db: str | None = setting(
        None,
        "db",
        "user database made by `fileferry user` (default: used if it exists,"
        " ~/.local/share/fileferry/users.db)",
        metavar="PATH",
    )


@dataclass(frozen=True, slots=True)
class TLSConfig:
    cert: str | None = setting(
        None, "tls_cert", "PEM certificate (chain) for FTPS", metavar="FILE", group=_TLS
    )
    key: str | None = setting(
        None, "tls_key", "PEM private key for FTPS", metavar="FILE", group=_TLS
    )
    #: Make a throwaway self-signed certificate at start (quick tests, not production).
    self_signed: bool = setting(
        False,
        "tls_self_signed",
        "make a throwaway self-signed certificate and print its fingerprint",
        group=_TLS,
    )
    #: No login and no transfer without TLS.
    required: bool = setting(
        False, "tls_required", "refuse logins and transfers without TLS", group=_TLS
    )
    #: A second listener speaking TLS from the first byte (implicit FTPS).
    implicit_port: int | None = setting(
        None,
        "tls_implicit_port",
        "also listen for implicit FTPS",
        metavar="PORT",
        group=_TLS,
        low=0,
        high=65535,
    )
    #: PROT P data connections must resume the control connection's TLS session.
    session_reuse: bool = setting(
        True,
        "tls_session_reuse",
        "PROT P data connections must resume the control TLS session (default: on)",
        group=_TLS,
        toggle=True,
    )

    @property
    def enabled(self) -> bool:
        """Whether there is (or will be) a certificate to speak TLS with."""
        return self.cert is not None or self.self_signed


@dataclass(frozen=True, slots=True)
class DataConfig:
    """Data connections (passive listeners and transfers)."""

    passive_ports: tuple[int, int] | None = setting(
        None, "passive_ports", "port range for passive mode", metavar="LO-HI"
    )
    masquerade_address: str | None = setting(
        None, "masquerade_address", "IPv4 address to announce in PASV replies", metavar="ADDR"
    )
    timeout: float = setting(
        300.0,
        "data_timeout",
        "data connection stall timeout (300)",
        metavar="SECONDS",
        low=0,
        high=_DAY,
        open_low=True,
        unit="seconds",
    )
    #: How long a PASV listener waits for the client's connection, counted
    #: from the PASV: a listener no transfer took by then is closed.
    accept_timeout: float = setting(
        60.0, "accept_timeout", low=0, high=_DAY, open_low=True, unit="seconds"
    )
    #: Passive listeners one client address may hold at once; 0: a quarter of
    #: the range, at least one. Only with ``passive_ports`` (without a range
    #: the kernel's ports are not scarce). Each worker applies it to its own
    #: slice of the range (an explicit figure: its share, rounded up).
    passive_per_ip: int = setting(
        0, "max_passive_ports_per_ip",
        "passive ports one client address may hold (0: a quarter of the range)",
        metavar="N", low=0, high=65535,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """What one control connection may hold or take."""

    max: int = setting(
        2000, "max_sessions", "sessions in total (2000)", metavar="N", group=_LIMITS,
        low=1, high=1_000_000,
    )  # fmt: skip
    per_ip: int = setting(
        200, "max_sessions_per_ip", "sessions per client address (200)", metavar="N",
        group=_LIMITS, low=1, high=1_000_000,
    )  # fmt: skip
    #: Sustained commands per second per session; bursts up to twice this.
    commands_per_second: float = setting(5000.0, "max_commands_per_second", low=1, high=1_000_000)
    idle_timeout: float = setting(
        300.0, "idle_timeout", "control idle timeout (300)", metavar="SECONDS",
        low=0, high=_DAY, open_low=True, unit="seconds",
    )  # fmt: skip
    #: An unauthenticated connection is closed after this long.
    login_timeout: float = setting(
        60.0, "login_timeout", "time to log in (60)", metavar="SECONDS", group=_LIMITS,
        low=0, high=30 * _DAY, open_low=True, unit="seconds",
    )  # fmt: skip
    max_line: int = setting(4200, "max_line", low=512, high=65536)
    max_list_entries: int = setting(200_000, "max_list_entries", low=1, high=100_000_000)


@dataclass(frozen=True, slots=True)
class BanLimits:
    """The brute-force defender: failed logins ban an address for a while."""

    #: Failed logins from one address within ``window`` that trigger a ban.
    threshold: int = setting(5, "ban_threshold", low=1, high=1_000_000)
    window: float = setting(600.0, "ban_window", low=0, high=30 * _DAY, open_low=True)
    #: First ban length; each further ban of the same address doubles it.
    time: float = setting(900.0, "ban_time", low=0, high=30 * _DAY, open_low=True)
    max_time: float = setting(86400.0, "ban_max_time", low=0, high=30 * _DAY, open_low=True)
    #: Seconds before answering a failed login.
    failure_delay: float = setting(1.0, "login_failure_delay", low=0, high=60, unit="seconds")
    #: Password checks in flight at once from one address (more wait their
    #: turn): without it, guesses sent in parallel were all checked before the
    #: first failure could ban. A failed check keeps its place for the failure
    #: delay. With ``--workers N`` each worker allows its share, rounded up.
    checks_per_ip: int = setting(
        4, "max_login_checks_per_ip", "password checks at once per client address (4)",
        metavar="N", group=_LIMITS, low=1, high=10_000,
    )  # fmt: skip
    #: Password checks in flight at once for one user name, from any address:
    #: slows guessing spread over many addresses, none of which gets banned.
    checks_per_user: int = setting(
        8, "max_login_checks_per_user", "password checks at once per user name (8)",
        metavar="N", group=_LIMITS, low=1, high=10_000,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Bytes per second for all sessions together, each direction; 0 = unlimited."""

    upload: int = setting(0, "upload_rate", parse=account_fields.parse_size)
    download: int = setting(0, "download_rate", parse=account_fields.parse_size)


@dataclass(frozen=True, slots=True)
class HookLimits:
    """How much the ``[[hook]]`` programs and URLs may take of the server."""

    #: Hooks running at once (each ``before_reply`` upload check also counts
    #: against a cap of this size, of its own); more wait in the queue.
    max_running: int = setting(
        4, "hook_max_running", "event hooks running at once (4)", metavar="N",
        group=_LIMITS, low=1, high=1024,
    )  # fmt: skip
    #: Hook runs waiting for a slot, at most; past it events are dropped
    #: (and logged) rather than held: a stuck hook never grows memory.
    queue: int = setting(1000, "hook_queue", low=1, high=1_000_000)


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    sessions: SessionLimits = field(default_factory=SessionLimits)
    bans: BanLimits = field(default_factory=BanLimits)
    rates: RateLimits = field(default_factory=RateLimits)
    #: With a PostgreSQL ``db``: how long a node's sessions and upload
    #: reservations stay counted after it stops renewing them (killed with
    #: -9, cut off); each node renews every quarter of it, at most 0.5 s.
    lease_time: float = setting(15.0, "lease_time", low=1, high=3600, unit="seconds")
    hooks: HookLimits = field(default_factory=HookLimits)


def _parse_networks(value: object, key: str) -> tuple[str, ...]:
    """CIDRs (``10.0.0.0/8``; a bare address is one host): a TOML list, or
    comma-separated text from a flag or the environment; normalised."""
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    networks: list[str] = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        try:
            networks.append(str(ipaddress.ip_network(text, strict=False)))
        except ValueError:
            raise ConfigError(f"{key}: {text!r} is not an address or a CIDR network") from None
    return tuple(networks)


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """The PROXY protocol, for nodes behind a TCP load balancer (docs/scale-out.md)."""

    #: Every control connection must open with a PROXY header (v1 or v2) from
    #: a ``trusted`` network; its address is the client's from then on.
    protocol: bool = setting(
        False,
        "proxy_protocol",
        "expect a PROXY protocol header (v1/v2) from a --trusted-proxy on every connection",
        group=_PROXY,
    )
    trusted: tuple[str, ...] = setting(
        (),
        "trusted_proxy",
        "balancer network allowed to send PROXY headers (repeatable)",
        metavar="CIDR",
        group=_PROXY,
        parse=_parse_networks,
        repeatable=True,
    )
    #: A header not complete this long after the connection is refused.
    header_timeout: float = setting(
        5.0, "proxy_header_timeout", low=0, high=3600, open_low=True, unit="seconds"
    )


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    level: LogLevel = setting("info", "log_level", "log verbosity (info)")
    #: ``json``: one object per line (see observability/jsonlog.py).
    format: LogFormat = setting(
        "text", "log_format", "log lines as text or json objects (text)", group=_OBSERVE
    )
    #: One wu-ftpd/vsftpd style line per finished transfer (observability/xferlog.py).
    xferlog: str | None = setting(
        None,
        "xferlog",
        "also log each finished transfer to FILE, xferlog format (reopened on SIGHUP)",
        metavar="FILE",
        group=_OBSERVE,
    )


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """The Prometheus endpoint (observability/metrics.py); off without ``address``."""

    address: tuple[str, int] | None = setting(
        None,
        "metrics",
        "serve Prometheus metrics at http://ADDR:PORT/metrics (needs the metrics extra)",
        metavar="ADDR:PORT",
        group=_OBSERVE,
        parse=parse_listen_address,
    )
    #: Byte and file counters carry a ``user`` label; off for many accounts.
    per_user: bool = setting(
        True,
        "metrics_per_user",
        "label byte and file counters by user (default: on)",
        group=_OBSERVE,
        toggle=True,
    )
    #: Distinct ``user`` label values at most; later users count as ``_other``.
    max_users: int = setting(1000, "metrics_max_users", low=1, high=100_000)


@dataclass(frozen=True, slots=True)
class AdminConfig:
    """The web admin and its REST API, served by the same process (off by default)."""

    listen: str | None = setting(
        None,
        "admin",
        "serve the web admin and REST API at ADDR:PORT (e.g. 127.0.0.1:8021; needs the"
        " 'admin' extra and a user database)",
        metavar="ADDR:PORT",
        parse=parse_host_port,
    )
    #: A bucket root's usage is a listing of every key: made in the background
    #: this often, never per page view (server/rootusage.py).
    usage_interval: float = setting(
        300.0,
        "admin_usage_interval",
        "with an s3:// root, seconds between background measurements of the bucket's"
        " usage shown by the admin (300)",
        metavar="SECONDS",
        low=0,
        high=_DAY,
        open_low=True,
        unit="seconds",
    )


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = setting(
        "127.0.0.1", "host", "address to listen on (default 127.0.0.1; :: = dual stack)"
    )
    port: int = setting(
        2121, "port", "port to listen on (default 2121; 0 = any free)", low=0, high=65535
    )
    banner: str = setting("fileferry FTP server ready.", "banner")
    anonymous: bool = setting(True, "anonymous", "allow anonymous login (default: on)", toggle=True)
    write: bool = setting(False, "write", "let anonymous users write too")
    #: Processes sharing one listening socket (inherited from the parent),
    #: each with its own event loop and its own slice of ``data.passive_ports``.
    workers: int = setting(
        1,
        "workers",
        "processes sharing the port, one event loop each (default 1)",
        metavar="N",
        low=1,
        high=64,
    )
    #: On SIGTERM (or ``FTPServer.stop(grace=...)``), how long running
    #: transfers may go on after the listeners closed and idle sessions were
    #: told 421; what still runs then is aborted (426, 421, uploads discarded).
    shutdown_grace: float = setting(
        30.0,
        "shutdown_grace",
        "on SIGTERM, seconds running transfers may take to finish (30)",
        metavar="SECONDS",
        low=0,
        high=_DAY,
        unit="seconds",
    )
    #: This node's name in logs and in state shared between nodes; ``None``:
    #: the host name (see :attr:`node`).
    node_name: str | None = setting(
        None,
        "node_name",
        "this node's name in logs and shared state (default: the host name)",
        metavar="NAME",
        parse=parse_node_name,
    )
    #: ``--user`` and ``[[user]]`` accounts, besides the user store.
    users: tuple[UserConfig, ...] = ()
    site_exec: tuple[SiteExecCommand, ...] = ()
    #: ``[[hook]]`` tables (config/hooks.py).
    hooks: tuple[HookConfig, ...] = ()
    storage: StorageConfig = field(default_factory=StorageConfig)
    s3: S3Config = field(default_factory=S3Config)
    user_store: UserStoreConfig = field(default_factory=UserStoreConfig)
    data: DataConfig = field(default_factory=DataConfig)
    tls: TLSConfig = field(default_factory=TLSConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)

    @property
    def node(self) -> str:
        """``node_name``, or this machine's host name when none was given."""
        return self.node_name or socket.gethostname()
