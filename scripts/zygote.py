"""The zygote: one warm process that forks launch workers (see rumor.node.mesh.zygote).

Run as ``python -m rumor.scripts.zygote --fd FD --module M --prepare JSON`` by the
launcher; not a user command. It imports ``M``, calls ``M.zygote_prepare(OPTIONS)`` if ``M``
has one (a worker module's imports, torch threads, warm-up), freezes the garbage
collector's view of everything so far (``gc.freeze()``) and serves fork requests on the
``SOCK_SEQPACKET`` socket ``FD`` until the launcher's end closes. Its stdout and stderr
are its log; its children's are theirs.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import gc
import importlib
import json
import os
import runpy
import select
import signal
import socket
import sys
import traceback
from typing import Any

from rumor.node.mesh.zygote import MAX_MESSAGE, decode, encode

MAX_FDS = 8


def threads_now() -> int:
    """Threads of this process (native ones too, which ``threading`` does not see)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def require_one_thread(when: str) -> None:
    """RuntimeError unless this process has exactly one thread (a fork copies only the
    calling thread: locks another one held would stay locked in the child)."""
    n = threads_now()
    if n != 1:
        raise RuntimeError(f"{n} threads {when}: the zygote cannot fork")


def run_child(module: str, argv: list[str]) -> int:
    """In the forked child: run ``module`` as ``python -m module argv...`` would."""
    sys.modules.pop(module, None)  # run its body afresh as __main__, as -m does
    sys.argv = [module, *argv]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        if exc.code is None:
            return 0
        if isinstance(exc.code, int):
            return exc.code
        sys.stderr.write(f"{exc.code}\n")
        return 1
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


class Server:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.children: set[int] = set()

    def send(self, msg: dict[str, Any]) -> bool:
        try:
            self.sock.send(encode(msg))
        except OSError:
            return False  # the launcher is gone: the loop sees EOF next
        return True

    def serve(self) -> int:
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        try:
            while True:
                ready, _, _ = select.select([self.sock.fileno(), self.wake_r], [], [])
                if self.wake_r in ready:
                    with contextlib.suppress(BlockingIOError):
                        while os.read(self.wake_r, 512):
                            pass
                self.reap()
                if self.sock.fileno() in ready:
                    try:
                        data, fds, _flags, _addr = socket.recv_fds(self.sock, MAX_MESSAGE,
                                                                   MAX_FDS)
                    except ConnectionResetError:
                        return 0
                    if not data:
                        for fd in fds:
                            os.close(fd)
                        return 0  # the launcher closed its end, or died
                    self.request(data, fds)
        finally:
            signal.set_wakeup_fd(-1)

    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            self.children.discard(pid)
            self.send({"exit": pid, "code": os.waitstatus_to_exitcode(status)})

    def request(self, data: bytes, fds: list[int]) -> None:
        req_id: Any = None
        try:
            msg = decode(data)
            req_id = msg.get("id")
            if msg.get("op") != "fork" or len(fds) != 3 or min(fds) < 3:
                raise ValueError(f"bad request {msg!r} with fds {fds}")
            module, argv = str(msg["module"]), [str(a) for a in msg.get("argv", [])]
            require_one_thread("in the zygote")
            pid = self.fork(module, argv, fds)
        except Exception as exc:
            self.send({"id": req_id, "error": f"{type(exc).__name__}: {exc}"})
            return
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.children.add(pid)
        self.send({"id": req_id, "pid": pid})

    def fork(self, module: str, argv: list[str], fds: list[int]) -> int:
        sys.stdout.flush()
        sys.stderr.flush()
        gc.freeze()  # what the zygote made since the last fork: shared, never traversed
        pid = os.fork()
        if pid == 0:  # the child: never returns into the zygote's loop
            code = 1
            try:
                os.setpgid(0, 0)
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                for fd in (self.wake_r, self.wake_w):
                    os.close(fd)
                self.sock.close()
                for target, fd in enumerate(fds):
                    os.dup2(fd, target)
                for fd in fds:
                    os.close(fd)
                code = run_child(module, argv)
            except BaseException:
                with contextlib.suppress(Exception):
                    traceback.print_exc()
            finally:
                with contextlib.suppress(Exception):
                    sys.stdout.flush()
                    sys.stderr.flush()
                os._exit(code & 0xFF)
        try:
            os.setpgid(pid, pid)  # also here: a killpg right after our reply finds it
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.ESRCH):
                raise
        return pid


def prepare(module: str, options: dict[str, Any]) -> None:
    """Import ``module`` and call its ``zygote_prepare(options)``, if it has one."""
    mod = importlib.import_module(module)
    fn = getattr(mod, "zygote_prepare", None)
    if callable(fn):
        fn(options)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--fd", type=int, required=True)
    p.add_argument("--module", required=True)
    p.add_argument("--prepare", default="{}", help="JSON options of zygote_prepare")
    args = p.parse_args(argv)
    sock = socket.socket(fileno=args.fd)
    server = Server(sock)
    try:
        options = json.loads(args.prepare)
        prepare(args.module, options if isinstance(options, dict) else {})
        gc.collect()
        gc.freeze()
        require_one_thread("after the preload")
    except Exception as exc:
        traceback.print_exc()
        server.send({"ready": False, "error": f"{type(exc).__name__}: {exc}"})
        return 1
    if not server.send({"ready": True, "pid": os.getpid()}):
        return 0
    return server.serve()


if __name__ == "__main__":
    sys.exit(main())
