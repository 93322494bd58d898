"""``fileferry get | put | ls | mkdir | rm | mv | mirror | hash``: the client's command line.

Each command is a thin layer over the Python API (:mod:`fileferry.client.api`):
parse arguments, connect, call, report. Failures become one line on stderr
and an exit status from :class:`fileferry.client.errors.ExitCode`, so a
script can tell a refused login from a missing file from a full disk.
Imports beyond argparse happen inside the commands, so ``fileferry serve``
does not pay for them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fileferry.client.api import Client
    from fileferry.client.listing import RemoteEntry
    from fileferry.client.progress import Bars
    from fileferry.client.urls import FTPURL

_EPILOG = (
    "URLs are ftp://[user[:password]@]host[:port]/path or ftps://... (explicit TLS). "
    "Passwords come from the URL, $FILEFERRY_PASSWORD, ~/.netrc, or a prompt. "
    "Exit status: 0 ok, 1 other failure, 2 usage, 3 connection/TLS/timeout, 4 login, "
    "5 the server refused (missing file, permission, quota, full disk), "
    "6 local file or disk error, 7 verification failed, 130 interrupted."
)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress, only errors")
    common.add_argument("--ca-file", metavar="PEM", help="trust this CA for ftps:// servers")
    common.add_argument(
        "--insecure", action="store_true", help="do not check the ftps:// server's certificate"
    )
    common.add_argument(
        "--active", action="store_true", help="active mode: the server connects back (PORT/EPRT)"
    )
    common.add_argument(
        "--timeout", type=float, default=30.0, metavar="SECONDS", help="network timeout (30)"
    )
    return common


def register(subparsers: Any) -> None:
    """Add the client's subcommands to the ``fileferry`` parser."""
    common = _common()

    def add(name: str, help_text: str, run: Callable[[argparse.Namespace], int]) -> Any:
        parser = subparsers.add_parser(
            name, help=help_text, description=help_text, parents=[common], epilog=_EPILOG
        )
        parser.set_defaults(run=run)
        return parser

    get = add("get", "download a file", run_get)
    get.add_argument("url", metavar="URL")
    get.add_argument(
        "dest", nargs="?", default=".", metavar="DEST", help="file or folder (.); - for stdout"
    )
    get.add_argument(
        "--segments", type=_positive, default=1, metavar="N", help="N connections for one file"
    )
    get.add_argument("--no-resume", dest="resume", action="store_false", help="start over")
    get.add_argument("--no-verify", dest="verify", action="store_false", help="skip the check")
    get.add_argument("-p", "--preserve", action="store_true", help="keep the server's mtime")
    get.add_argument(
        "--create-dirs",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="make missing local folders of DEST (default: on, as put does remotely)",
    )

    put = add("put", "upload files", run_put)
    put.add_argument("files", nargs="+", metavar="FILE")
    put.add_argument("url", metavar="URL", help="remote file, or folder (ending in /)")
    put.add_argument("--parallel", type=_positive, default=1, metavar="N", help="N files at once")
    put.add_argument(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="continue a shorter remote file (default: only when a digest proves it matches)",
    )
    put.add_argument("--no-verify", dest="verify", action="store_false", help="skip the check")
    put.add_argument("-p", "--preserve", action="store_true", help="keep the local mtime")
    put.add_argument(
        "--create-dirs",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="make missing remote folders on the way, as mirror does (default: on; the URL"
        " says where the file goes, and a folder made by a typo is visible and harmless,"
        " where a refusal after connecting is not what anyone asked for)",
    )

    ls = add("ls", "list a remote folder", run_ls)
    ls.add_argument("url", metavar="URL")
    ls.add_argument("-l", "--long", action="store_true", help="type, size and time too")
    ls.add_argument("--json", action="store_true", help="a JSON array, for scripts")
    ls.add_argument("-R", "--recursive", action="store_true", help="list subfolders too")

    mkdir = add("mkdir", "make remote folders", run_mkdir)
    mkdir.add_argument("urls", nargs="+", metavar="URL")
    mkdir.add_argument("--parents", "-P", action="store_true", help="make parents as needed")

    rm = add("rm", "delete remote files (or folders)", run_rm)
    rm.add_argument("urls", nargs="+", metavar="URL")
    rm.add_argument("-r", "--recursive", action="store_true", help="delete folders and contents")

    mv = add("mv", "rename or move a remote file or folder", run_mv)
    mv.add_argument("url", metavar="URL")
    mv.add_argument("target", metavar="NEWPATH", help="new path (or URL on the same server)")

    hashing = add("hash", "print the server's digest of a remote file", run_hash)
    hashing.add_argument("urls", nargs="+", metavar="URL")
    hashing.add_argument("-a", "--algorithm", metavar="NAME", help="e.g. SHA-256, MD5, CRC32")

    mirror = add(
        "mirror", "make DEST a copy of SRC (local to remote, or remote to local)", run_mirror
    )
    mirror.add_argument("source", metavar="SRC")
    mirror.add_argument("dest", metavar="DEST")
    mirror.add_argument("--delete", action="store_true", help="delete what SRC does not have")
    mirror.add_argument("--only-newer", action="store_true", help="copy only newer files")
    mirror.add_argument("--include", action="append", default=[], metavar="GLOB")
    mirror.add_argument("--exclude", action="append", default=[], metavar="GLOB")
    mirror.add_argument("-n", "--dry-run", action="store_true", help="show the plan, do nothing")
    mirror.add_argument(
        "--parallel", type=_positive, default=1, metavar="N", help="N files at once"
    )
    mirror.add_argument("--no-verify", dest="verify", action="store_false", help="skip checks")


# --- running a command ------------------------------------------------------------


def _execute(args: argparse.Namespace, body: Callable[[], Coroutine[Any, Any, int]]) -> int:
    import asyncio

    from fileferry.client.errors import ClientError, ExitCode

    try:
        return asyncio.run(body())
    except ClientError as exc:
        print(f"fileferry: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print("fileferry: interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)


def _url(text: str) -> FTPURL:
    from fileferry.client.errors import UsageError
    from fileferry.client.urls import is_url, parse_url

    if not is_url(text):
        raise UsageError(f"not an ftp:// or ftps:// URL: {text}")
    return parse_url(text)


def _client(args: argparse.Namespace, url: FTPURL) -> Client:
    import getpass

    from fileferry.client.api import connect

    prompt = getpass.getpass if sys.stdin.isatty() else None
    return connect(
        url,
        ca_file=args.ca_file,
        insecure=args.insecure,
        active=args.active,
        timeout=args.timeout,
        prompt=prompt,
    )


def _bars(args: argparse.Namespace, overall: int | None = None) -> Bars:
    from fileferry.client.progress import Bars

    return Bars(args.quiet, overall)


def _same_server(a: FTPURL, b: FTPURL) -> bool:
    return (a.scheme, a.host, a.port, a.user) == (b.scheme, b.host, b.port, b.user)


def _verified(result: Any) -> str:
    shown = f", {result.verified_by} verified" if result.verified_by else ""
    if result.mtime_kept is False:
        shown += ", time not kept (the server lacks or refused MFMT)"
    return shown


# --- the commands -----------------------------------------------------------------


def run_get(args: argparse.Namespace) -> int:
    async def body() -> int:
        from fileferry.client.listing import basename
        from fileferry.client.progress import human

        url = _url(args.url)
        if not basename(url.path):
            raise _usage(f"{url} names a folder; use mirror to copy folders")
        dest = sys.stdout.buffer if args.dest == "-" else args.dest
        if args.dest != "-" and args.create_dirs:
            _make_local_folders(args.dest)
        async with _client(args, url) as ftp:
            with _bars(args) as bars:
                bar = bars.file(basename(url.path))
                result = await ftp.download(
                    url.path,
                    dest,
                    resume=args.resume,
                    verify=args.verify,
                    segments=args.segments,
                    preserve_mtime=args.preserve,
                    progress=bar,
                )
                resumed = (
                    f", resumed at {human(result.resumed_from)}" if result.resumed_from else ""
                )
                if args.dest != "-":
                    bars.note(
                        f"got {result.local} ({human(result.size)}{resumed}{_verified(result)})"
                    )
        return 0

    return _execute(args, body)


def _make_local_folders(dest: str) -> None:
    """DEST ending in a separator is a folder to put the file in; otherwise its
    parent is. Either is made when missing."""
    import os

    from fileferry.client.errors import local_error

    folder = dest if dest.endswith(("/", os.sep)) else os.path.dirname(dest)
    if not folder:
        return
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise local_error("create", folder, exc) from None


def _usage(message: str) -> Exception:
    from fileferry.client.errors import UsageError

    return UsageError(message)


def run_put(args: argparse.Namespace) -> int:
    async def body() -> int:
        import asyncio
        import os
        import posixpath

        from fileferry.client.errors import ClientError, LocalError, RemoteError
        from fileferry.client.listing import join
        from fileferry.client.progress import human

        url = _url(args.url)
        sizes = []
        for name in args.files:
            try:
                sizes.append(os.stat(name).st_size)
            except OSError as exc:
                raise LocalError(f"cannot read {name}: {exc.strerror}") from None
        async with _client(args, url) as ftp:
            into_folder = url.directory or len(args.files) > 1
            if not into_folder:
                try:
                    into_folder = (await ftp.stat(url.path)).is_dir
                except RemoteError:
                    into_folder = False
            jobs = [
                (name, join(url.path, os.path.basename(name)) if into_folder else url.path)
                for name in args.files
            ]
            folder = url.path if into_folder else posixpath.dirname(url.path)
            unmade: RemoteError | None = None
            if args.create_dirs:
                # A help, not a condition: an upload-only drop box can be neither
                # looked at nor made, and still takes the file.
                try:
                    await ftp.mkdir(folder, parents=True)
                except RemoteError as exc:
                    unmade = exc
            limit = asyncio.Semaphore(args.parallel)
            failures: list[ClientError] = []
            overall = sum(sizes) if len(jobs) > 1 else None
            with _bars(args, overall) as bars:

                async def one(local: str, remote: str) -> None:
                    async with limit:
                        bar = bars.file(os.path.basename(local))
                        try:
                            result = await ftp.upload(
                                local,
                                remote,
                                resume=args.resume,
                                verify=args.verify,
                                preserve_mtime=args.preserve,
                                progress=bar,
                            )
                        except ClientError as exc:
                            failures.append(exc)
                            why = (
                                f" (after {unmade})"
                                if unmade and isinstance(exc, RemoteError)
                                else ""
                            )
                            print(f"fileferry: {exc}{why}", file=sys.stderr)
                            return
                        finally:
                            bar.close()
                        resumed = (
                            f", resumed at {human(result.resumed_from)}"
                            if result.resumed_from
                            else ""
                        )
                        bars.note(
                            f"put {remote} ({human(result.size)}{resumed}{_verified(result)})"
                        )

                await asyncio.gather(*(one(local, remote) for local, remote in jobs))
        return int(failures[0].exit_code) if failures else 0

    return _execute(args, body)


def run_ls(args: argparse.Namespace) -> int:
    async def body() -> int:
        import datetime as dt
        import json

        url = _url(args.url)
        async with _client(args, url) as ftp:
            if args.recursive:
                entries = []
                async for _, dirs, files in ftp.walk(url.path):
                    entries += dirs + files
                entries.sort(key=lambda e: e.path)
            else:
                entries = await ftp.list(url.path)
        strip = {"": 0, "/": 1}.get(url.path, len(url.path) + 1)

        def shown(entry: RemoteEntry) -> str:
            return entry.path[strip:] if args.recursive else entry.name

        def when(entry: RemoteEntry) -> str | None:
            if entry.mtime is None:
                return None
            return dt.datetime.fromtimestamp(entry.mtime, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

        if args.json:
            rows = [
                {
                    "name": shown(e),
                    "path": e.path,
                    "type": e.kind.value,
                    "size": e.size,
                    "mtime": when(e),
                }
                for e in entries
            ]
            print(json.dumps(rows, ensure_ascii=False, indent=2))
        elif args.long:
            for e in entries:
                size = "-" if e.size is None else str(e.size)
                stamp = when(e) or "-"
                print(f"{e.kind.value:<5} {size:>14} {stamp:<20} {shown(e)}")
        else:
            for e in entries:
                print(shown(e) + ("/" if e.is_dir else ""))
        return 0

    return _execute(args, body)


async def _per_server(
    args: argparse.Namespace, texts: list[str], each: Callable[[Client, str], Awaitable[None]]
) -> int:
    urls = [_url(t) for t in texts]
    groups: list[list[FTPURL]] = []
    for url in urls:
        for group in groups:
            if _same_server(group[0], url):
                group.append(url)
                break
        else:
            groups.append([url])
    for group in groups:
        async with _client(args, group[0]) as ftp:
            for url in group:
                await each(ftp, url.path)
    return 0


def run_mkdir(args: argparse.Namespace) -> int:
    async def each(ftp: Client, path: str) -> None:
        await ftp.mkdir(path, parents=args.parents)

    return _execute(args, lambda: _per_server(args, args.urls, each))


def run_rm(args: argparse.Namespace) -> int:
    async def each(ftp: Client, path: str) -> None:
        if path in ("", "/"):
            raise _usage("refusing to delete the login folder")
        await ftp.remove(path, recursive=args.recursive)

    return _execute(args, lambda: _per_server(args, args.urls, each))


def run_hash(args: argparse.Namespace) -> int:
    async def each(ftp: Client, path: str) -> None:
        digest = await ftp.hash(path, args.algorithm)
        print(f"{digest.hexdigest}  {path}  ({digest.algorithm})")

    return _execute(args, lambda: _per_server(args, args.urls, each))


def run_mv(args: argparse.Namespace) -> int:
    async def body() -> int:
        from fileferry.client.urls import is_url

        url = _url(args.url)
        target = args.target
        if is_url(target):
            other = _url(target)
            if not _same_server(url, other):
                raise _usage("mv works within one server; use get and put between servers")
            target = other.path
        async with _client(args, url) as ftp:
            await ftp.rename(url.path, target)
        return 0

    return _execute(args, body)


def run_mirror(args: argparse.Namespace) -> int:
    async def body() -> int:
        from pathlib import Path

        from fileferry.client import mirror
        from fileferry.client.progress import human
        from fileferry.client.urls import is_url

        if is_url(args.source) == is_url(args.dest):
            raise _usage("mirror needs one local folder and one ftp:// or ftps:// URL")
        upload = is_url(args.dest)
        url = _url(args.dest if upload else args.source)
        local = Path(args.source if upload else args.dest)
        options = mirror.Options(
            delete=args.delete,
            only_newer=args.only_newer,
            include=tuple(args.include),
            exclude=tuple(args.exclude),
            parallel=args.parallel,
            verify=args.verify,
        )
        async with _client(args, url) as ftp:
            report = await mirror.prepare(ftp, local, url.path, upload, options)
            if args.dry_run:
                for action in report.actions:
                    print(action)
                return 0
            total = sum(a.size for a in report.actions if a.kind == "copy")
            with _bars(args, total) as bars:
                await mirror.apply(ftp, local, url.path, upload, options, report, bars)
                bars.note(
                    f"mirrored: {report.copied} copied ({human(report.bytes)}),"
                    f" {report.deleted} deleted, {len(report.failures)} failed"
                )
        if report.failures:
            return int(report.failures[0][1].exit_code)
        return 0

    return _execute(args, body)
