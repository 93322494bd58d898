"""pyftpdlib (a server fileferry did not write) as a subprocess for the client tests.

Prints ``READY <port>`` once it listens on 127.0.0.1 (port 0 = any free one),
then serves until killed. With ``--cert``/``--key`` it is an explicit-TLS
(``AUTH TLS``) server that requires TLS on control and data connections.
"""

from __future__ import annotations

import argparse
import logging
import sys

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--user", default="bob")
    parser.add_argument("--password", default="builder")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--no-mlst", action="store_true", help="no MLST/MLSD, like vsftpd")
    parser.add_argument("--no-mfmt", action="store_true", help="no MFMT, like vsftpd")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    authorizer = DummyAuthorizer()
    authorizer.add_user(args.user, args.password, args.root, perm="elradfmwMT")
    handler: type[FTPHandler]
    if args.cert:
        from pyftpdlib.handlers import TLS_FTPHandler

        class Handler(TLS_FTPHandler):
            certfile = args.cert
            keyfile = args.key
            tls_control_required = True
            tls_data_required = True

        handler = Handler
    else:

        class Handler(FTPHandler):  # type: ignore[no-redef]
            pass

        handler = Handler
    dropped = {"MLST", "MLSD"} if args.no_mlst else set()
    if args.no_mfmt:
        dropped.add("MFMT")
    if dropped:
        handler.proto_cmds = {k: v for k, v in FTPHandler.proto_cmds.items() if k not in dropped}
    handler.authorizer = authorizer
    handler.banner = "pyftpdlib ready"
    server = FTPServer(("127.0.0.1", 0), handler)
    server.max_cons = 256
    print("READY", server.address[1], flush=True)
    server.serve_forever(timeout=1)


if __name__ == "__main__":
    main()
