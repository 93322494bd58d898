#!/usr/bin/env python3
"""A fileferry upload hook: move each finished upload into an import folder.

    [[hook]]
    name = "import"
    on = ["upload"]
    command = ["/usr/bin/python3", "/etc/fileferry/move_to_import.py", "/srv/import"]

fileferry runs it after the 226, with the event as JSON on stdin. The file
goes to ``/srv/import/<user>/<name>`` (a name already there gets a numbered
twin, nothing is overwritten), by ``rename``: keep the import folder on the
same file system as the served one and a reader of the import folder never
sees half a file. A file that changed since the event (replaced or appended
to by a newer upload: its size differs) is left for that upload's own run.
Exit status and output go to fileferry's log.
"""

from __future__ import annotations

import json
import os
import re
import sys


def _safe(name: str) -> str:
    """A user name as one harmless folder name."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")
    return cleaned or "_"


def _free_name(folder: str, name: str) -> str:
    stem, dot, ext = name.rpartition(".")
    if not stem:
        stem, dot, ext = name, "", ""
    candidate = os.path.join(folder, name)
    n = 1
    while os.path.lexists(candidate):
        candidate = os.path.join(folder, f"{stem}.{n}{dot}{ext}")
        n += 1
    return candidate


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: move_to_import.py IMPORT_FOLDER", file=sys.stderr)
        return 2
    event = json.load(sys.stdin)
    source = event.get("local_path")
    if event.get("event") != "upload" or not source:
        print("not an upload on local disk; nothing to move", file=sys.stderr)
        return 2
    try:
        size = os.stat(source).st_size
    except FileNotFoundError:
        print(f"{event['path']}: already gone")
        return 0
    if size != event["size"]:
        print(f"{event['path']}: changed since this upload; left for the newer one")
        return 0
    folder = os.path.join(sys.argv[1], _safe(event.get("user") or "anonymous"))
    os.makedirs(folder, exist_ok=True)
    target = _free_name(folder, os.path.basename(source))
    os.rename(source, target)  # same file system: atomic, never half a file
    print(f"{event['path']} -> {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
