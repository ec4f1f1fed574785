"""Linux network namespaces for the NAT and LAN tests (root, ``ip``, ``iptables``).

``NatLab`` builds, under names unique to one run::

    pub  10.77.0.1 ---- br (in pub) ----+---- 10.77.0.2 nat-a 10.77.1.1 ---- 10.77.1.2 host-a
                                        +---- 10.77.0.3 nat-b 10.77.2.1 ---- 10.77.2.2 host-b

Each router masquerades what leaves its WAN side (``iptables -t nat ... MASQUERADE``)
and forwards inbound only for connections its side opened (conntrack ESTABLISHED,RELATED;
everything else from the WAN is dropped silently, no RST), so host-a and host-b cannot
dial each other and pub sees them only as 10.77.0.2 / 10.77.0.3. No default route
leaves the lab.

``LanLab`` puts N hosts on one bridge (10.78.0.1..N/24, multicast on) for mDNS.

Both tear everything down in ``close()`` (also on a failed build); ``unavailable()``
says why namespaces cannot be made here (not root, no ``ip``/``iptables``), or None.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Self


def unavailable(*, need_iptables: bool = True) -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    tools = ["ip", "iptables"] if need_iptables else ["ip"]
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        return f"missing {', '.join(missing)} (make test-tools installs them)"
    probe = f"rprobe{secrets.token_hex(3)}"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        return f"cannot create a network namespace: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _sh(*args: str) -> None:
    r = subprocess.run(list(args), capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {r.stderr.strip()}")


class _Lab:
    def __init__(self) -> None:
        self.tag = secrets.token_hex(2)
        self._namespaces: list[str] = []

    def _ns(self, role: str) -> str:
        name = f"rumor-{self.tag}-{role}"
        _sh("ip", "netns", "add", name)
        self._namespaces.append(name)
        self.run(name, "ip", "link", "set", "lo", "up")
        return name

    def run(self, ns: str, *cmd: str) -> None:
        _sh("ip", "netns", "exec", ns, *cmd)

    def exec_prefix(self, ns: str) -> list[str]:
        """The argv prefix that runs a command inside namespace ``ns``."""
        return ["ip", "netns", "exec", ns]

    def _veth(self, a_ns: str, a_if: str, b_ns: str, b_if: str) -> None:
        tmp_a, tmp_b = f"v{self.tag}{secrets.token_hex(2)}a", f"v{self.tag}{secrets.token_hex(2)}b"
        _sh("ip", "link", "add", tmp_a, "type", "veth", "peer", "name", tmp_b)
        _sh("ip", "link", "set", tmp_a, "netns", a_ns)
        _sh("ip", "link", "set", tmp_b, "netns", b_ns)
        self.run(a_ns, "ip", "link", "set", tmp_a, "name", a_if)
        self.run(b_ns, "ip", "link", "set", tmp_b, "name", b_if)

    def _addr(self, ns: str, ifname: str, cidr: str) -> None:
        self.run(ns, "ip", "addr", "add", cidr, "dev", ifname)
        self.run(ns, "ip", "link", "set", ifname, "up")

    def close(self) -> None:
        """Delete every namespace of this lab (their veths and rules go with them)."""
        for ns in reversed(self._namespaces):
            subprocess.run(["ip", "netns", "pids", ns], capture_output=True)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self._namespaces.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def namespaces(self) -> list[str]:
        return list(self._namespaces)


class NatLab(_Lab):
    """pub + two NAT routers + one host behind each (see the module docstring)."""

    PUB_IP = "10.77.0.1"
    HOST_IPS: ClassVar[dict[str, str]] = {"a": "10.77.1.2", "b": "10.77.2.2"}
    WAN_IPS: ClassVar[dict[str, str]] = {"a": "10.77.0.2", "b": "10.77.0.3"}

    def __init__(self) -> None:
        super().__init__()
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self) -> None:
        self.pub = self._ns("pub")
        self.run(self.pub, "ip", "link", "add", "br0", "type", "bridge")
        self.run(self.pub, "ip", "link", "set", "br0", "up")
        self.run(self.pub, "ip", "addr", "add", f"{self.PUB_IP}/24", "dev", "br0")
        self.hosts: dict[str, str] = {}
        self.routers: dict[str, str] = {}
        for i, side in enumerate(("a", "b")):
            router = self._ns(f"nat{side}")
            host = self._ns(f"host{side}")
            self.routers[side], self.hosts[side] = router, host
            self._veth(self.pub, f"p{side}", router, "wan")
            self.run(self.pub, "ip", "link", "set", f"p{side}", "master", "br0")
            self.run(self.pub, "ip", "link", "set", f"p{side}", "up")
            self._addr(router, "wan", f"{self.WAN_IPS[side]}/24")
            self._veth(router, "lan", host, "eth0")
            self._addr(router, "lan", f"10.77.{i + 1}.1/24")
            self._addr(host, "eth0", f"{self.HOST_IPS[side]}/24")
            self.run(host, "ip", "route", "add", "default", "via", f"10.77.{i + 1}.1")
            self.run(router, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
            self.run(router, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan",
                     "-j", "MASQUERADE")
            self.run(router, "iptables", "-A", "FORWARD", "-i", "wan", "-o", "lan", "-m",
                     "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")
            self.run(router, "iptables", "-A", "FORWARD", "-i", "wan", "-o", "lan",
                     "-j", "DROP")
            # like a home router: unsolicited packets to the WAN side get no answer (no
            # RST that would kill a hole punch's half-open mapping on the other side)
            self.run(router, "iptables", "-A", "INPUT", "-i", "wan", "-m", "conntrack",
                     "--ctstate", "NEW,INVALID", "-j", "DROP")


class LanLab(_Lab):
    """``n`` hosts on one bridge (in its own namespace), multicast on."""

    def __init__(self, n: int) -> None:
        super().__init__()
        try:
            self._build(n)
        except BaseException:
            self.close()
            raise

    def _build(self, n: int) -> None:
        self.switch = self._ns("lan")
        self.run(self.switch, "ip", "link", "add", "br0", "type", "bridge")
        self.run(self.switch, "ip", "link", "set", "br0", "up")
        self.hosts: list[str] = []
        self.ips: list[str] = []
        for i in range(n):
            host = self._ns(f"h{i}")
            self._veth(self.switch, f"p{i}", host, "eth0")
            self.run(self.switch, "ip", "link", "set", f"p{i}", "master", "br0")
            self.run(self.switch, "ip", "link", "set", f"p{i}", "up")
            ip = f"10.78.0.{i + 1}"
            self._addr(host, "eth0", f"{ip}/24")
            self.run(host, "ip", "link", "set", "eth0", "multicast", "on")
            # mDNS sends to 224.0.0.251: route multicast out of eth0
            self.run(host, "ip", "route", "add", "224.0.0.0/4", "dev", "eth0")
            self.hosts.append(host)
            self.ips.append(ip)


def ns_python(lab: _Lab, ns: str, python: str, code: str, args: Sequence[str] = ()) -> list[str]:
    """argv that runs ``python -c code args...`` inside ``ns``."""
    return [*lab.exec_prefix(ns), python, "-c", code, *args]


class NsPeer:
    """A ``rumor join --json`` process inside a namespace, and the events it printed."""

    def __init__(self, lab: _Lab, ns: str, rumor: str, args: Sequence[str], log: str) -> None:
        self.lab, self.ns = lab, ns
        self.python = str(os.path.join(os.path.dirname(rumor), "python"))
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._log = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*lab.exec_prefix(ns), rumor, "join", "--json", *args],
            stdout=subprocess.PIPE, stderr=self._log, text=True, start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            event["_t"] = time.monotonic()  # when the test saw it
            with self._lock:
                self.events.append(event)

    def of(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if e.get("event") == kind]

    def wait_for(self, what: str, pred: Callable[[], Any], deadline: float) -> Any:
        """Poll ``pred`` until truthy; AssertionError naming ``what`` at ``deadline``."""
        while time.monotonic() < deadline:
            got = pred()
            if got:
                return got
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.ns}: rumor join exited ({self.proc.returncode}) "
                                     f"while waiting for {what}")
            time.sleep(0.2)
        raise AssertionError(f"{self.ns}: timed out waiting for {what}")

    @property
    def hello(self) -> dict[str, Any]:
        return self.of("listening")[0]

    def status(self) -> dict[str, Any]:
        """GET /status, from inside the namespace (its API listens on its loopback)."""
        code = ("import sys, urllib.request; "
                "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())")
        out = subprocess.run(
            ns_python(self.lab, self.ns, self.python, code, [self.hello["api"] + "/status"]),
            capture_output=True, text=True, timeout=30,
        )
        if out.returncode != 0:
            raise AssertionError(f"{self.ns}: GET /status failed: {out.stderr.strip()}")
        result: dict[str, Any] = json.loads(out.stdout)
        return result

    def terminate(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM (if not sent yet), then SIGKILL after ``grace`` s; always reaped."""
        self.terminate()
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        self._reader.join(timeout=5)
        self._log.close()


def stop_all(peers: Sequence[NsPeer], grace: float = 10.0) -> None:
    """Stop every peer: SIGTERM to all at once, then reap each (SIGKILL after grace)."""
    for p in peers:
        p.terminate()
    end = time.monotonic() + grace
    for p in peers:
        p.stop(max(0.1, end - time.monotonic()))
