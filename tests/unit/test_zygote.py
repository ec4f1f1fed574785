"""The zygote (rumor.node.mesh.zygote + rumor.scripts.zygote) with real forks.

Each test starts a real zygote preparing ``tests.unit.zygote_child`` and forks children
from it: their stdout lines and exit codes reach the launcher's handle, they sit in their
own process groups and hold no fd of the zygote, a child dies when the launcher's end of
its stdin closes, and the zygote dies when the launcher's end of its socket closes (also
when the launcher is killed with SIGKILL). Waits are awaited conditions with deadlines.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from rumor.node.mesh.zygote import LOST_CODE, ForkedProcess, Zygote, ZygoteError, fork_available
from tests.helpers import until

pytestmark = pytest.mark.skipif(not fork_available(), reason="needs fork + fd passing")

ROOT = Path(__file__).resolve().parents[2]
CHILD = "tests.unit.zygote_child"
DEADLINE = 120.0  # a loaded 2-core box; every wait ends as soon as its condition holds


def _env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{path}" if path else str(ROOT)}


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
async def zygote(tmp_path: Path) -> AsyncIterator[Zygote]:
    with (tmp_path / "zygote.log").open("wb") as log:
        z = await Zygote.start(CHILD, log, prepare={"tag": "warm"}, env=_env(),
                               timeout=DEADLINE)
        try:
            yield z
        finally:
            await z.close()


async def _spawn(z: Zygote, tmp_path: Path, *argv: str,
                 name: str = "child.log") -> tuple[ForkedProcess, dict[str, Any]]:
    with (tmp_path / name).open("wb") as log:  # the child has its own copy of the fd
        child = await z.spawn(CHILD, list(argv), log, limit=1 << 20)
    assert child.stdout is not None
    hello = json.loads(await asyncio.wait_for(child.stdout.readline(), DEADLINE))
    return child, hello


async def _say(child: ForkedProcess, line: str) -> None:
    assert child.stdin is not None
    child.stdin.write(line.encode() + b"\n")
    await child.stdin.drain()


async def test_a_forked_child_runs_the_module_as_main_and_its_lines_and_code_reach_us(
    zygote: Zygote, tmp_path: Path,
) -> None:
    child, hello = await _spawn(zygote, tmp_path, "--flag", "x")
    assert hello["argv"] == ["--flag", "x"] and hello["name"] == "__main__"
    assert hello["pid"] == child.pid != zygote.proc.pid
    # prepared once, in the zygote, before the fork
    assert hello["prepared"] == {"tag": "warm", "in": zygote.proc.pid}
    assert hello["pgid"] == child.pid  # its own process group: killpg reaches it alone
    assert hello["threads"] == 1
    assert psutil.Process(child.pid).ppid() == zygote.proc.pid
    await _say(child, "echo hello there")
    assert child.stdout is not None
    assert await asyncio.wait_for(child.stdout.readline(), DEADLINE) == b"hello there\n"
    assert child.returncode is None
    await _say(child, "exit 7")
    assert await asyncio.wait_for(child.wait(), DEADLINE) == 7
    assert child.returncode == 7
    assert await asyncio.wait_for(child.stdout.read(), DEADLINE) == b""  # EOF
    assert (tmp_path / "child.log").read_text() == "child stderr line\n"


async def test_a_child_holds_only_its_own_stdio_of_the_zygote(
    zygote: Zygote, tmp_path: Path,
) -> None:
    """No copy of the zygote's socket or of another child's pipes: otherwise the zygote
    or a child would outlive the launcher's end closing."""
    first, _ = await _spawn(zygote, tmp_path, name="a.log")
    second, hello = await _spawn(zygote, tmp_path, name="b.log")
    fds = hello["fds"]
    assert not [t for t in fds.values() if t.startswith("socket:")], fds
    pipes = {fd: t for fd, t in fds.items() if t.startswith("pipe:")}
    assert set(pipes) == {"0", "1"}, fds
    assert fds["2"].endswith("b.log")
    for child in (first, second):
        await _say(child, "exit 0")
        assert await asyncio.wait_for(child.wait(), DEADLINE) == 0


async def test_a_child_exits_when_the_launcher_side_of_its_stdin_closes(
    zygote: Zygote, tmp_path: Path,
) -> None:
    child, _ = await _spawn(zygote, tmp_path)
    assert child.stdin is not None
    child.stdin.close()
    assert await asyncio.wait_for(child.wait(), DEADLINE) == 0


async def test_killpg_right_after_the_fork_kills_the_child_and_reports_the_signal(
    zygote: Zygote, tmp_path: Path,
) -> None:
    """The zygote also calls setpgid for the child, so a killpg the moment the pid is
    known cannot miss a child that has not yet made its own group."""
    with (tmp_path / "child.log").open("wb") as log:
        child = await zygote.spawn(CHILD, [], log)
    os.killpg(child.pid, signal.SIGKILL)
    assert await asyncio.wait_for(child.wait(), DEADLINE) == -signal.SIGKILL


async def test_an_uncaught_exception_in_the_child_exits_1_with_its_traceback_in_the_log(
    zygote: Zygote, tmp_path: Path,
) -> None:
    child, _ = await _spawn(zygote, tmp_path)
    await _say(child, "raise")
    assert await asyncio.wait_for(child.wait(), DEADLINE) == 1
    log = (tmp_path / "child.log").read_text()
    assert "RuntimeError: raised in the child" in log
    # the zygote is unharmed: it forks the next one
    again, _ = await _spawn(zygote, tmp_path, name="again.log")
    await _say(again, "exit 0")
    assert await asyncio.wait_for(again.wait(), DEADLINE) == 0


async def test_the_zygote_exits_when_our_end_closes_and_its_children_live_on(
    zygote: Zygote, tmp_path: Path,
) -> None:
    child, _ = await _spawn(zygote, tmp_path)
    await zygote.close()
    assert zygote.proc.returncode == 0
    assert not zygote.alive
    assert _alive(child.pid)  # still served by its stdin: the launcher decides
    with (tmp_path / "late.log").open("wb") as log, pytest.raises(ZygoteError):
        await zygote.spawn(CHILD, [], log)
    assert child.stdin is not None
    child.stdin.close()  # now it exits; no zygote left to reap it, a pidfd tells us
    assert await asyncio.wait_for(child.wait(), DEADLINE) == LOST_CODE
    await until(f"child {child.pid} to exit", lambda: not _alive(child.pid), DEADLINE)


async def test_a_zygote_that_would_fork_with_a_thread_running_refuses_to_start(
    tmp_path: Path,
) -> None:
    with (tmp_path / "zygote.log").open("wb") as log, pytest.raises(ZygoteError,
                                                                  match="threads"):
        await Zygote.start(CHILD, log, prepare={"start_thread": True}, env=_env(),
                           timeout=DEADLINE)


async def test_a_zygote_whose_module_does_not_import_fails_to_start(tmp_path: Path) -> None:
    with (tmp_path / "zygote.log").open("wb") as log, pytest.raises(ZygoteError,
                                                                  match="No module"):
        await Zygote.start("tests.unit.no_such_module", log, env=_env(), timeout=DEADLINE)
    assert "ModuleNotFoundError" in (tmp_path / "zygote.log").read_text()


_LAUNCHER = textwrap.dedent("""
    import asyncio, json, sys
    from rumor.node.mesh.zygote import Zygote

    async def main():
        with open(sys.argv[1], "wb") as log:
            z = await Zygote.start("tests.unit.zygote_child", log)
            child = await z.spawn("tests.unit.zygote_child", [], log)
            await child.stdout.readline()
            print(json.dumps({"zygote": z.proc.pid, "child": child.pid}), flush=True)
            await asyncio.Event().wait()

    asyncio.run(main())
""")


async def test_a_kill_9_of_the_launcher_leaves_neither_the_zygote_nor_a_child(
    tmp_path: Path,
) -> None:
    proc = subprocess.Popen([sys.executable, "-c", _LAUNCHER, str(tmp_path / "z.log")],
                            stdout=subprocess.PIPE, env=_env(), cwd=ROOT)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), DEADLINE)
        pids = json.loads(line)
        assert _alive(pids["zygote"]) and _alive(pids["child"])
        proc.kill()
        proc.wait()
        for role, pid in pids.items():
            await until(f"the {role} ({pid}) to exit", lambda pid=pid: not _alive(pid), DEADLINE)
    finally:
        proc.kill()
        proc.wait()
