"""PeerIDs are derived exactly as libp2p derives them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rumor.protocols.errors import RejectedMessage
from rumor.protocols.identity import (
    b58decode,
    b58encode,
    peer_id_to_bytes,
    public_key_from_peer_id,
    verify,
)
from tests.helpers import ident


def test_peer_id_matches_libp2p() -> None:
    crypto = pytest.importorskip("libp2p.crypto.ed25519")
    from libp2p.peer.id import ID

    me = ident(5)
    kp = crypto.create_new_key_pair(me.seed_bytes())
    assert ID.from_pubkey(kp.public_key).to_base58() == me.peer_id
    assert me.peer_id.startswith("12D3KooW")


@given(st.binary(max_size=64))
def test_base58_round_trips(data: bytes) -> None:
    assert b58decode(b58encode(data)) == data


def test_public_key_is_recovered_from_the_peer_id() -> None:
    me = ident(3)
    sig = me.sign(b"hello")
    assert verify(me.peer_id_bytes, sig, b"hello")
    assert not verify(me.peer_id_bytes, sig, b"hellO")
    assert not verify(ident(4).peer_id_bytes, sig, b"hello")
    assert public_key_from_peer_id(peer_id_to_bytes(me.peer_id)) is not None


def test_malformed_peer_ids_are_rejected() -> None:
    with pytest.raises(RejectedMessage, match="bad_sender"):
        peer_id_to_bytes("not-base58-0OIl")
    with pytest.raises(RejectedMessage, match="bad_sender"):
        public_key_from_peer_id(b"\x00" * 38)
