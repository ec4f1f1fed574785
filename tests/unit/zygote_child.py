"""A tiny worker module for tests/unit/test_zygote.py (run by the zygote, not by pytest).

``zygote_prepare`` runs once in the zygote and records where (in os.environ); the
forked child's main prints one JSON line about itself, then answers stdin lines:
``echo TEXT`` -> ``TEXT``, ``exit N`` -> exits with N, ``raise`` -> an uncaught
exception, EOF -> exit 0.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import Any


def zygote_prepare(options: dict[str, Any]) -> None:
    # the child runs this module afresh as __main__ (as ``python -m`` does): what the
    # zygote prepared reaches it through state that survives the fork, here os.environ
    os.environ["ZYGOTE_CHILD_PREPARED"] = json.dumps({**options, "in": os.getpid()})
    if options.get("start_thread"):  # a zygote that would fork with a thread running
        threading.Thread(target=threading.Event().wait, daemon=True).start()


def _fds() -> dict[str, str]:
    out = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            out[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # the listing's own fd, closed by now
    return out


def main() -> int:
    prepared = json.loads(os.environ.get("ZYGOTE_CHILD_PREPARED", "null"))
    print(json.dumps({"argv": sys.argv[1:], "pid": os.getpid(), "pgid": os.getpgid(0),
                      "name": __name__, "prepared": prepared, "fds": _fds(),
                      "threads": len(os.listdir("/proc/self/task"))}), flush=True)
    sys.stderr.write("child stderr line\n")
    sys.stderr.flush()
    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "echo":
            print(arg, flush=True)
        elif cmd == "exit":
            return int(arg)
        elif cmd == "raise":
            raise RuntimeError("raised in the child")
    return 0


if __name__ == "__main__":
    sys.exit(main())
