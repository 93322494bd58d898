"""``fileferry config example`` and ``fileferry config keys``: the settings, for operators.

The example is the reference for every setting: a test checks that each
setting and each account key appears in it and that it loads, so a new
setting cannot be added without being documented here. Settings whose
default is "none" are shown commented out, with a value.

``keys`` prints, for every setting, its spellings: the flat TOML key, the
key in its section's table, the environment variable and the flag. It is
generated from the description (:mod:`fileferry.config.schema`), so it is
always complete.
"""

from __future__ import annotations

import argparse

EXAMPLE = """\
# fileferry configuration: fileferry serve --config /etc/fileferry.toml
# Precedence, lowest first: defaults, this file, FILEFERRY_* environment
# variables (FILEFERRY_PORT=2100), command-line flags. Unknown keys are errors.

# --- what to serve and where -------------------------------------------------
root = "/srv/ftp"                 # folder served to anonymous and to [[user]]s without a home
host = "::"                       # address to listen on; "::" is dual stack (IPv4 and IPv6)
port = 2121                       # 0 picks a free port
banner = "fileferry FTP server ready."
log_level = "info"                # debug, info, warning or error

# --- what operators watch (docs/operations.md) ----------------------------------
log_format = "text"               # "text", or "json": one object per line
# node_name = "ftp-1"             # this node in logs and shared state (default: the host name)
# xferlog = "/var/log/fileferry/xferlog"  # one line per transfer; reopened on SIGHUP
# metrics = "127.0.0.1:9101"      # Prometheus /metrics (pip install 'fileferry[metrics]')
metrics_per_user = true           # a "user" label on byte and file counters
metrics_max_users = 1000          # distinct "user" labels at most; more count as "_other"

# --- anonymous access ----------------------------------------------------------
anonymous = false                 # allow "anonymous"/"ftp" logins with any password
write = false                     # let anonymous users upload, rename, delete, mkdir

# --- accounts ------------------------------------------------------------------
# The SQLite user database that `fileferry user` manages. When unset, the
# default ~/.local/share/fileferry/users.db is used if it exists. It must not
# lie inside a served folder. A URL such as "postgresql://fileferry@db.example/ftp"
# shares accounts, bans, session caps and quotas between nodes instead (the
# password may also come from PGPASSWORD or ~/.pgpass).
# db = "/var/lib/fileferry/users.db"
# The web admin and REST API (pip install 'fileferry[admin]'; needs db and one
# worker); administrators come from `fileferry admin add NAME`.
# admin = "127.0.0.1:8021"
admin_usage_interval = 300.0     # with an s3:// root: seconds between bucket-usage counts
lease_time = 15.0                 # with PostgreSQL: seconds a dead node's sessions stay counted
upload_rate = 0                   # bytes/s for all sessions together (e.g. "100M"); 0 = unlimited
download_rate = 0

# --- data connections ------------------------------------------------------------
# passive_ports = "60000-60100"   # ports for PASV/EPSV (open them in the firewall)
# masquerade_address = "203.0.113.7"  # IPv4 address announced in PASV replies behind NAT
idle_timeout = 300.0              # seconds before an idle control connection is closed
data_timeout = 300.0              # seconds a data connection may stall
accept_timeout = 60.0             # seconds a passive listener waits for the client, from PASV
max_passive_ports_per_ip = 0      # passive ports one address may hold (0: a quarter of the range)
fsync_uploads = false             # make 226 wait until an upload is on disk
fs_calls = "auto"                 # open/stat/rename: "inline" on the loop, "thread", or "auto"
temp_max_age = 3600.0             # seconds before a dead upload's temp file is swept
resumable_uploads = false         # keep interrupted uploads for SIZE + APPE/REST to resume
partial_max_age = 604800.0        # seconds an unresumed partial is kept (resumable mode)
workers = 1                       # processes sharing one listening socket, one loop each
shutdown_grace = 30.0             # on SIGTERM, seconds running transfers get to finish

# --- FTPS (RFC 4217) -------------------------------------------------------------
# tls_cert = "/etc/fileferry/cert.pem"   # PEM certificate chain
# tls_key = "/etc/fileferry/key.pem"     # PEM private key
tls_self_signed = false           # a throwaway self-signed certificate (tests only)
tls_required = false              # refuse logins and transfers without TLS
# tls_implicit_port = 990         # also listen for implicit FTPS
tls_session_reuse = true          # PROT P data connections must resume the control session

# --- limits and defence ------------------------------------------------------------
max_sessions = 2000               # sessions in total
max_sessions_per_ip = 200         # sessions per client address
max_commands_per_second = 5000.0  # per session; bursts up to twice this
login_timeout = 60.0              # an unauthenticated connection is closed after this
login_failure_delay = 1.0         # seconds before answering a failed login
ban_threshold = 5                 # failed logins within ban_window that ban an address
ban_window = 600.0
ban_time = 900.0                  # first ban; each further ban doubles it
ban_max_time = 86400.0
max_login_checks_per_ip = 4       # password checks at once per address (more wait)
max_login_checks_per_user = 8     # password checks at once per user name, any address
max_line = 4200                   # longest command line accepted
max_list_entries = 200000         # entries a listing returns at most
hook_max_running = 4              # event hooks running at once (per worker)
hook_queue = 1000                 # hook runs waiting at most; more are dropped and logged

# --- behind a TCP load balancer (docs/scale-out.md) --------------------------------------
proxy_protocol = false            # every connection opens with a PROXY header (v1 or v2)
# trusted_proxy = ["10.0.0.1/32"]  # the balancer's networks: headers from anyone else refused
proxy_header_timeout = 5.0        # seconds for the header to arrive

# --- an S3 bucket as root, home or virtual folder: "s3://bucket/prefix" (docs/storage.md) ---
# Unset ones come from the AWS_* variables; the secret key only from a file or
# AWS_SECRET_ACCESS_KEY, never from this file.
# s3_endpoint = "https://s3.eu-west-1.amazonaws.com"
# s3_region = "eu-west-1"
# s3_allow_http = false           # true for a plain http:// endpoint (MinIO, SeaweedFS on a LAN)
# s3_access_key_id = "AKIAIOSFODNN7EXAMPLE"
# s3_secret_access_key_file = "/run/secrets/s3-secret"

# --- users in this file (besides the database) ---------------------------------------
# Every key below is optional except name and password (or password_hash).
[[user]]
name = "scanner"
password = "change-me"            # hashed at start; or password_hash = "$argon2id$..."
home = "/srv/ftp/scanner"         # the user's root; default: root above
write = true                      # shorthand: all of elradfmwMT (false: elr)
site_exec = false                 # may run SITE EXEC commands (adds the X letter)
# Letters (pyftpdlib's): e=cd l=list r=download a=append d=delete f=rename
# m=mkdir w=upload M=chmod T=set time; X=SITE EXEC. Overrides write.
permissions = "elradfmwMT"
folder_permissions = { "/archive" = "elr", "/drop" = "elw" }   # deepest folder wins
virtual_folders = [
  { path = "/shared", source = "/srv/ftp/shared", read_only = true },
]
quota_bytes = "10G"               # 0 = no limit; K/M/G/T are binary, KB/MB/GB decimal
quota_files = 10000
max_sessions = 4                  # this user's concurrent sessions
upload_rate = "2M"                # bytes/s, shared by this user's sessions
download_rate = "5M"
allowed_networks = ["192.168.10.0/24", "2001:db8::/32"]
expires = 2030-12-31              # last day of use (UTC); a date-time works too
disabled = false

# --- SITE EXEC: commands the operator allows -------------------------------------------
[site_exec.disk]
argv = ["/usr/bin/df", "-h", "."]  # absolute path; run directly, never through a shell
args = []                          # one regular expression per client argument
timeout = 10                       # seconds, then the process group is killed
max_output = 65536                 # bytes of output returned at most
description = "free space of the user's home"

# --- event hooks (docs/hooks.md) -------------------------------------------------------
[[hook]]
name = "virus-scan"
on = ["upload"]                    # or download delete rename mkdir rmdir login login-failed ban
command = ["/etc/fileferry/scan_upload.sh"]  # absolute path, no shell; the event on stdin as JSON
before_reply = true                # the 226 waits; a non-zero exit removes the file, answers 550
timeout = 120                      # seconds, then the process group is killed

[[hook]]
name = "alerts"
on = ["login-failed", "ban"]
url = "https://alerts.example.com/ftp"   # a JSON POST; https verifies the certificate
headers = { Authorization = "Bearer change-me" }   # never logged
retries = 3                        # after a timeout, a refused connection or a 5xx
backoff = 1.0                      # seconds before the first retry; doubles
timeout = 10
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("config", help="configuration helpers")
    parser.set_defaults(run=lambda args: _help(parser))
    actions = parser.add_subparsers(dest="config_command", metavar="ACTION")
    example = actions.add_parser("example", help="print a complete, commented config file")
    example.set_defaults(run=_print_example)
    keys = actions.add_parser("keys", help="list every setting: TOML keys, variable, flag")
    keys.set_defaults(run=_print_keys)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _print_example(args: argparse.Namespace) -> int:
    print(EXAMPLE, end="")
    return 0


def _print_keys(args: argparse.Namespace) -> int:
    from fileferry.config.schema import SETTINGS

    rows = [("KEY", "IN ITS TABLE", "ENVIRONMENT", "FLAG", "DEFAULT")]
    for key, leaf in SETTINGS.items():
        table = f"[{'.'.join(leaf.path[:-1])}] {leaf.path[-1]}" if len(leaf.path) > 1 else "-"
        flag = leaf.meta.flag if leaf.meta.help is not None else "-"
        if leaf.meta.toggle:
            flag = flag.replace("--", "--[no-]", 1)
        rows.append((key, table, leaf.meta.env, flag, repr(leaf.default)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1])
    return 0
