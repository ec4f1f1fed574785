"""The in-memory transport on a virtual network: what the simulator sends through.

``VirtualHub`` is a MemoryHub whose links are a SimNetwork (virtual clock, latency,
loss, bandwidth, blocked links); ``VirtualTransport`` is a MemoryTransport on it, so
the contract of rumor.node.transport.base holds and the conformance suite checks it
(tests/unit/test_transport_conformance.py, kind "virtual").

- ``send_nowait(to, data)`` is the synchronous core the simulator calls (``send`` awaits
  nothing else): the same checks as MemoryTransport (closed, unknown peer, oversize on
  either side, counted in the receiver's ``frame_rejects``), then the network schedules
  the delivery at now + latency (+ size / bandwidth) or drops it (loss, blocked link).
- Whoever runs the network's clock pops its events and hands deliveries to
  ``hub.dispatch(item)``: the receiver's ``on_receive`` callback when one is set (the
  simulator), else its event queue (the async API).
- ``next_event()`` on an empty queue runs the virtual clock itself until something
  arrives for this transport (like trio's MockClock autojump); when nothing is left to
  happen it raises TransportError instead of waiting forever.
"""

from __future__ import annotations

from collections.abc import Callable

from rumor.node.simnet import SimEvent, SimNetwork
from rumor.node.transport.base import DEFAULT_MAX_MESSAGE, PeerId, Received, TransportEvent
from rumor.node.transport.memory import MemoryHub, MemoryTransport
from rumor.protocols.errors import TransportError

__all__ = ["VirtualHub", "VirtualTransport"]

DELIVER = "deliver"


class VirtualHub(MemoryHub):
    """A MemoryHub whose messages travel over ``network`` (indices = join order)."""

    def __init__(self, network: SimNetwork) -> None:
        super().__init__()
        self.network = network
        self._index: dict[PeerId, int] = {}
        self._by_index: list[VirtualTransport] = []

    def attach(self, transport: VirtualTransport) -> int:
        """The network index of ``transport`` (stable across close/restart)."""
        i = self._index.get(transport.local_id)
        if i is None:
            i = self._index[transport.local_id] = len(self._by_index)
            self._by_index.append(transport)
        else:
            self._by_index[i] = transport
        return i

    def index_of(self, peer: PeerId) -> int:
        return self._index[peer]

    def dispatch(self, item: SimEvent, dst: int | None = None) -> None:
        """Hand a popped ``deliver`` event to its receiver ``dst`` (one of the event's
        targets, ``payload[2]``), or to every target in order when ``dst`` is None."""
        src, data, targets = item.payload
        sender = self._by_index[src].local_id
        for t in targets if dst is None else (dst,):
            self._by_index[t]._arrive(Received(sender, data))

    def run_until(self, done: Callable[[], bool]) -> bool:
        """Pop network events (dispatching deliveries) until ``done()``; False when the
        network went idle first. Events other than deliveries are dropped: this is for
        a network nobody else drives (the conformance suite)."""
        while not done():
            item = self.network.pop()
            if item is None:
                return False
            if item.kind == DELIVER:
                self.dispatch(item)
        return True


class VirtualTransport(MemoryTransport):
    """A MemoryTransport whose sends cross the hub's virtual network."""

    def __init__(self, hub: VirtualHub, peer_id: PeerId, *,
                 max_message: int = DEFAULT_MAX_MESSAGE) -> None:
        super().__init__(hub, peer_id, max_message=max_message)
        self._vhub = hub
        self.index = hub.attach(self)
        self.on_receive: Callable[[Received], None] | None = None

    def start_nowait(self) -> None:
        """``start()`` for a caller without an event loop (the simulator)."""
        if self._closed:
            raise TransportError("transport is closed")
        if not self._started:
            self._hub.register(self)
            self._started = True

    def send_nowait(self, to: PeerId, data: bytes) -> bool:
        """Queue ``data`` for ``to``; False when the network lost or blocked it.
        TransportError as MemoryTransport.send (closed, unknown peer, oversize)."""
        self._check_open()
        if len(data) > self.max_message:
            raise TransportError(
                f"message of {len(data)} bytes exceeds max_message={self.max_message}")
        other = self._remote(to)
        if len(data) > other.max_message:
            other._reject_frame("oversize", self._id, f"{len(data)} B > max {other.max_message} B")
            raise TransportError(f"peer {to} refuses messages over {other.max_message} bytes")
        return self._vhub.network.send(self.index, self._vhub.index_of(to), bytes(data))

    async def send(self, to: PeerId, data: bytes) -> None:
        self.send_nowait(to, data)

    async def next_event(self) -> TransportEvent:
        if (not self._closed and self._events.empty()
                and not self._vhub.run_until(lambda: not self._events.empty())):
            raise TransportError("the virtual network is idle: nothing will arrive")
        return await super().next_event()

    def _arrive(self, event: Received) -> None:
        if self._closed:
            return
        if self.on_receive is not None:
            self.on_receive(event)
        else:
            self._events.put_nowait(event)
