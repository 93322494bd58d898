"""A hook for the tests: records what it was given, then behaves as told.

    hook_script.py RECORD_DIR MODE

Every run first writes ``RECORD_DIR/<event>-<pid>.json``: its argv, the
event read from stdin, its whole environment, and for an upload the
SHA-256 of the file at ``local_path`` as the hook saw it. Then MODE:
``ok`` prints one line; ``scan`` refuses (exit 3, two lines) a file holding
``EICAR``; ``hang`` starts a child (its pid in ``RECORD_DIR/child-<pid>``)
and both sleep; ``spew`` prints 8 MiB; ``crash`` aborts.
"""

import hashlib
import json
import os
import subprocess
import sys
import time

record_dir, mode = sys.argv[1], sys.argv[2]
event = json.load(sys.stdin)
record = {"argv": sys.argv, "event": event, "env": dict(os.environ)}
content = b""
if event.get("local_path") and os.path.exists(event["local_path"]):
    with open(event["local_path"], "rb") as fh:
        content = fh.read()
    record["sha256"] = hashlib.sha256(content).hexdigest()
name = os.path.join(record_dir, f"{event['event']}-{os.getpid()}.json")
with open(name + ".tmp", "w") as fh:
    json.dump(record, fh)
os.rename(name + ".tmp", name)

if mode == "ok":
    print(f"saw {event['event']}")
elif mode == "scan":
    if b"EICAR" in content:
        sys.stdout.write("INFECTED: Eicar-Test-Signature\r\nsecond line\n")
        sys.exit(3)
    print("clean")
elif mode == "hang":
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    with open(os.path.join(record_dir, f"child-{os.getpid()}"), "w") as fh:
        fh.write(str(child.pid))
    time.sleep(120)
elif mode == "spew":
    block = b"x" * 65536 + b"\n"
    for _ in range(128):
        sys.stdout.buffer.write(block)
    sys.stdout.flush()
elif mode == "crash":
    os.abort()
