"""PeerBook: the signed file of members met, and the dialable addresses a peer prints."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from multiaddr import Multiaddr

from rumor.node.transport.addresses import advertised, interface_ips, write_multiaddr_file
from rumor.node.transport.peer_book import PeerBook
from rumor.protocols.identity import Identity

ME = Identity.from_seed(b"\x11" * 32)
OTHERS = [Identity.from_seed(bytes([0x20 + i]) * 32).peer_id for i in range(5)]


def test_saved_members_come_back_most_recent_first(tmp_path: Path) -> None:
    book = PeerBook(tmp_path / "known_peers.json", ME, "s")
    for n, peer in enumerate(OTHERS):
        book.met(peer, (f"/ip4/127.0.0.1/tcp/{4000 + n}",), now=100.0 + n)
    assert book.dirty
    book.save()
    assert not book.dirty
    again = PeerBook(tmp_path / "known_peers.json", ME, "s").load()
    assert [p for p, _ in again] == OTHERS[::-1]
    assert again[0][1] == ("/ip4/127.0.0.1/tcp/4004",)


def test_a_member_seen_again_without_addresses_keeps_its_old_ones(tmp_path: Path) -> None:
    book = PeerBook(tmp_path / "b.json", ME, "s")
    book.met(OTHERS[0], ("/ip4/127.0.0.1/tcp/1",), now=1.0)
    book.save()
    book.met(OTHERS[0], (), now=2.0)
    assert not book.dirty  # nothing new to write
    book.met(OTHERS[1], (), now=3.0)  # never seen with an address: not remembered
    assert book.members() == [(OTHERS[0], ("/ip4/127.0.0.1/tcp/1",))]


def test_at_most_limit_members_are_kept(tmp_path: Path) -> None:
    book = PeerBook(tmp_path / "b.json", ME, "s", limit=3)
    for n, peer in enumerate(OTHERS):
        book.met(peer, ("/ip4/127.0.0.1/tcp/9",), now=float(n))
    assert [p for p, _ in book.members()] == OTHERS[:1:-1]


def test_a_tampered_foreign_or_other_swarm_file_is_ignored_with_a_warning(
        tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    book = PeerBook(path, ME, "s")
    book.met(OTHERS[0], ("/ip4/127.0.0.1/tcp/1",), now=1.0)
    book.save()
    record = json.loads(path.read_text())
    record["peers"][0]["addrs"] = ["/ip4/6.6.6.6/tcp/1"]
    path.write_text(json.dumps(record))
    tampered = PeerBook(path, ME, "s")
    assert tampered.load() == [] and "not signed" in (tampered.load_warning or "")
    book.save()  # a good file again
    other_key = PeerBook(path, Identity.from_seed(b"\x12" * 32), "s")
    assert other_key.load() == [] and other_key.load_warning
    other_swarm = PeerBook(path, ME, "t")
    assert other_swarm.load() == [] and "swarm" in (other_swarm.load_warning or "")
    path.write_bytes(b"\x00garbage")
    damaged = PeerBook(path, ME, "s")
    assert damaged.load() == [] and "damaged" in (damaged.load_warning or "")
    assert PeerBook(tmp_path / "missing.json", ME, "s").load() == []


def test_unspecified_listen_addresses_become_interface_addresses() -> None:
    ips = interface_ips("ip4")
    assert "127.0.0.1" in ips and ips[-1].startswith("127.")  # loopback last
    out = [str(a) for a in advertised([Multiaddr("/ip4/0.0.0.0/tcp/4001")])]
    assert out == [f"/ip4/{ip}/tcp/4001" for ip in ips]
    assert all("0.0.0.0" not in a for a in out)
    fixed = [str(a) for a in advertised([Multiaddr("/ip4/127.0.0.1/tcp/5")],
                                        [Multiaddr("/ip4/203.0.113.7/tcp/4001")])]
    assert fixed == ["/ip4/203.0.113.7/tcp/4001", "/ip4/127.0.0.1/tcp/5"]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 65535), min_size=1, max_size=6))
def test_advertised_addresses_have_no_duplicates(ports: list[int]) -> None:
    cands = [Multiaddr(f"/ip4/127.0.0.1/tcp/{p}") for p in ports]
    out = [str(a) for a in advertised(cands, cands[:1])]
    assert len(out) == len(set(out)) == len(set(ports))


def test_the_multiaddr_file_has_one_address_a_line(tmp_path: Path) -> None:
    addr = f"/ip4/127.0.0.1/tcp/4001/p2p/{ME.peer_id}"
    path = write_multiaddr_file(tmp_path / "d", [addr, addr.replace("4001", "4002")])
    assert path.read_text().splitlines() == [addr, addr.replace("4001", "4002")]
