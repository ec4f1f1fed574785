"""Worker processes forked from one warm process (a zygote) instead of started cold.

A launch worker pays ~0.2-0.4 GB of private memory for its imports and first torch ops
(Python objects, torch's operator registrations) before it hosts a single peer. The
zygote (``python -m rumor.scripts.zygote``) pays them once: it imports the worker
module, lets it prepare (``zygote_prepare()``: torch threads set before any op, the
lazily imported modules, torch.func's warm-up), calls ``gc.freeze()`` and then forks one
child per request, so the children share those pages copy-on-write.

Protocol, over an ``AF_UNIX`` ``SOCK_SEQPACKET`` socket pair (one JSON object a message;
the zygote's end is passed to it as an inherited fd):

- zygote -> launcher, once: ``{"ready": true, "pid": P}`` after its
  preload, or ``{"ready": false, "error": TEXT}`` (then it exits).
- launcher -> zygote: ``{"op": "fork", "id": N, "module": M, "argv": [...]}`` with three
  fds attached (SCM_RIGHTS): the child's stdin, stdout and stderr. The zygote forks; the
  child puts itself in its own process group (``setpgid``, done by both sides, so a
  ``killpg`` right after the reply cannot miss it), dup2s the fds onto 0/1/2, closes the
  zygote's own fds and runs ``M`` as ``python -m M argv...`` would (``runpy``).
- zygote -> launcher: ``{"id": N, "pid": PID}`` (or ``{"id": N, "error": TEXT}``), and
  ``{"exit": PID, "code": C}`` once it reaped the child (``C`` as
  ``asyncio.subprocess.Process.returncode``: negative for a signal).

The zygote runs a plain blocking loop (no asyncio, no threads: it refuses to fork while
the process has more than one thread) and exits when the launcher's end closes, also
after a ``kill -9`` of the launcher. The children hold no zygote fd: they exit when their
stdin (a pipe from the launcher) closes, as plain worker processes do. If the zygote is
gone before a child, the child's exit is noticed through a pidfd and its code reads
``LOST_CODE``.

:class:`Zygote` is the launcher's side; :class:`ForkedProcess` has what the launcher
uses of ``asyncio.subprocess.Process`` (``pid``, ``stdin``, ``stdout``, ``returncode``,
``wait()``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
from typing import IO, Any, Protocol

from rumor.protocols.errors import RumorError

__all__ = [
    "LOST_CODE",
    "ForkedProcess",
    "WorkerProcess",
    "Zygote",
    "ZygoteError",
    "decode",
    "encode",
    "fork_available",
]

MAX_MESSAGE = 64 << 10
LOST_CODE = 255  # a child's exit code when the zygote that would have reaped it is gone
ZYGOTE_MODULE = "rumor.scripts.zygote"


class ZygoteError(RumorError):
    """The zygote could not start, or could not fork a child."""


class WorkerProcess(Protocol):
    """What the launcher uses of a worker process (asyncio's Process or ForkedProcess)."""

    @property
    def pid(self) -> int: ...
    @property
    def returncode(self) -> int | None: ...
    @property
    def stdin(self) -> asyncio.StreamWriter | None: ...
    @property
    def stdout(self) -> asyncio.StreamReader | None: ...
    async def wait(self) -> int: ...


def fork_available() -> bool:
    """Whether this platform can run a zygote (fork, fd passing, SOCK_SEQPACKET)."""
    return (sys.platform.startswith("linux") and hasattr(os, "fork")
            and hasattr(socket, "SOCK_SEQPACKET") and hasattr(socket, "send_fds"))


def encode(msg: dict[str, Any]) -> bytes:
    data = json.dumps(msg).encode()
    if len(data) > MAX_MESSAGE:
        raise ZygoteError(f"zygote message of {len(data)} bytes (at most {MAX_MESSAGE})")
    return data


def decode(data: bytes) -> dict[str, Any]:
    msg = json.loads(data)
    if not isinstance(msg, dict):
        raise ValueError("a zygote message is a JSON object")
    return msg


async def _fd_ready(fd: int, *, write: bool = False) -> None:
    """Until ``fd`` is readable (or writable), through the running loop."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not fut.done():
            fut.set_result(None)

    if write:
        loop.add_writer(fd, ready)
    else:
        loop.add_reader(fd, ready)
    try:
        await fut
    finally:
        if write:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


class ForkedProcess:
    """A child of the zygote, seen from the launcher (asyncio.subprocess.Process-like)."""

    def __init__(self, pid: int, stdin: asyncio.StreamWriter, stdout: asyncio.StreamReader,
                 ) -> None:
        self._pid = pid
        self._stdin = stdin
        self._stdout = stdout
        self._returncode: int | None = None
        self._exited = asyncio.Event()

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def returncode(self) -> int | None:
        return self._returncode

    @property
    def stdin(self) -> asyncio.StreamWriter | None:
        return self._stdin

    @property
    def stdout(self) -> asyncio.StreamReader | None:
        return self._stdout

    async def wait(self) -> int:
        await self._exited.wait()
        assert self._returncode is not None
        return self._returncode

    def _set_exit(self, code: int) -> None:
        if self._returncode is None:
            self._returncode = code
            self._exited.set()

    async def _watch_pidfd(self) -> None:
        """The zygote is gone: learn of the exit through a pidfd (no exit code then)."""
        try:
            fd = os.pidfd_open(self._pid)
        except (ProcessLookupError, OSError):
            self._set_exit(LOST_CODE)
            return
        try:
            await _fd_ready(fd)
        finally:
            os.close(fd)
        self._set_exit(LOST_CODE)


class Zygote:
    """The launcher's side: start the zygote, fork children from it, close it."""

    def __init__(self, proc: asyncio.subprocess.Process, sock: socket.socket,
                 info: dict[str, Any]) -> None:
        self.proc = proc
        self.info = info
        self._sock = sock
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._children: dict[int, ForkedProcess] = {}
        self._early_exits: dict[int, int] = {}  # pid -> code, reaped before we had a handle
        self._closed = False
        self._watchers: set[asyncio.Future[None]] = set()
        self._reader: asyncio.Task[None] = asyncio.ensure_future(self._read())

    @classmethod
    async def start(cls, module: str, log: IO[bytes], *,
                    prepare: dict[str, Any] | None = None, timeout: float = 180.0,
                    python: str | None = None, env: dict[str, str] | None = None) -> Zygote:
        """Start a zygote that prepares ``module`` (its ``zygote_prepare(prepare)``, if
        it has one) and wait until it is ready (at most ``timeout`` s); raises
        ZygoteError if it fails or the platform has no fork."""
        if not fork_available():
            raise ZygoteError("no fork with fd passing on this platform")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            child_env = dict(os.environ if env is None else env)
            # numpy's OpenBLAS starts a thread pool at import; the zygote must have none
            # when it forks (numpy's BLAS is not the workers' hot path; torch's own
            # thread count is the module's to set in zygote_prepare)
            child_env.setdefault("OPENBLAS_NUM_THREADS", "1")
            proc = await asyncio.create_subprocess_exec(
                python or sys.executable, "-m", ZYGOTE_MODULE, "--fd", str(theirs.fileno()),
                "--module", module, "--prepare", json.dumps(prepare or {}),
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
                pass_fds=(theirs.fileno(),), start_new_session=True, env=child_env,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        loop = asyncio.get_running_loop()
        try:
            data = await asyncio.wait_for(loop.sock_recv(ours, MAX_MESSAGE), timeout)
            info = decode(data) if data else {"ready": False, "error": "exited at start"}
        except (TimeoutError, ValueError) as exc:
            info = {"ready": False, "error": f"no ready message: {exc!r}"}
        except BaseException:
            ours.close()
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            raise
        if not info.get("ready"):
            ours.close()
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 10)
            raise ZygoteError(f"zygote did not start: {info.get('error')}")
        return cls(proc, ours, info)

    @property
    def alive(self) -> bool:
        return not self._closed and self.proc.returncode is None

    async def spawn(self, module: str, argv: list[str], stderr: IO[bytes], *,
                    limit: int = 2 ** 16, timeout: float = 60.0) -> ForkedProcess:
        """Fork a child that runs ``python -m module argv...``, its stdin and stdout
        pipes to us and its stderr to ``stderr``."""
        if not self.alive:
            raise ZygoteError("the zygote is gone")
        loop = asyncio.get_running_loop()
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        req_id = self._next_id
        self._next_id += 1
        fut: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._pending[req_id] = fut
        try:
            msg = encode({"op": "fork", "id": req_id, "module": module, "argv": argv})
            await self._send(msg, [in_r, out_w, stderr.fileno()])
        except BaseException:
            self._pending.pop(req_id, None)
            for fd in (in_r, in_w, out_r, out_w):
                os.close(fd)
            raise
        # the kernel holds the passed copies now: the child's ends are not ours to keep
        os.close(in_r)
        os.close(out_w)
        try:
            reply = await asyncio.wait_for(fut, timeout)
        except BaseException:
            self._pending.pop(req_id, None)
            os.close(in_w)
            os.close(out_r)
            raise
        if "pid" not in reply:
            os.close(in_w)
            os.close(out_r)
            raise ZygoteError(f"zygote could not fork: {reply.get('error')}")
        pid = int(reply["pid"])
        reader = asyncio.StreamReader(limit=limit, loop=loop)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop),
                                     os.fdopen(out_r, "rb", 0))
        transport, protocol = await loop.connect_write_pipe(
            asyncio.streams.FlowControlMixin, os.fdopen(in_w, "wb", 0))
        writer = asyncio.StreamWriter(transport, protocol, None, loop)
        child = ForkedProcess(pid, writer, reader)
        self._children[pid] = child
        if pid in self._early_exits:
            child._set_exit(self._early_exits.pop(pid))
        elif self._closed:
            self._watch(child)
        return child

    async def _send(self, data: bytes, fds: list[int]) -> None:
        while True:
            try:
                socket.send_fds(self._sock, [data], fds)
                return
            except BlockingIOError:
                await _fd_ready(self._sock.fileno(), write=True)
            except OSError as exc:
                raise ZygoteError(f"the zygote is gone: {exc}") from exc

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                data = await loop.sock_recv(self._sock, MAX_MESSAGE)
                if not data:
                    break
                with contextlib.suppress(ValueError):
                    self._on_message(decode(data))
        except OSError:
            pass
        finally:
            self._lost()

    def _on_message(self, msg: dict[str, Any]) -> None:
        if "exit" in msg:
            pid, code = int(msg["exit"]), int(msg["code"])
            child = self._children.pop(pid, None)
            if child is not None:
                child._set_exit(code)
            else:
                self._early_exits[pid] = code
        elif "id" in msg:
            fut = self._pending.pop(int(msg["id"]), None)
            if fut is not None and not fut.done():
                fut.set_result(msg)

    def _lost(self) -> None:
        """The zygote's end closed: fail pending forks, watch live children by pidfd."""
        self._closed = True
        for fut in self._pending.values():
            if not fut.done():
                fut.set_result({"error": "the zygote exited"})
        self._pending.clear()
        for child in self._children.values():
            if child.returncode is None:
                self._watch(child)
        self._children.clear()

    def _watch(self, child: ForkedProcess) -> None:
        task = asyncio.ensure_future(child._watch_pidfd())
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def close(self, timeout: float = 10.0) -> None:
        """Close our end (the zygote exits on it) and wait for the zygote; its children
        live on until their own stdin closes."""
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader
        with contextlib.suppress(OSError):
            self._sock.close()
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()

    def kill(self) -> None:
        """SIGKILL the zygote (synchronous; for the launcher's last-resort cleanup)."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
