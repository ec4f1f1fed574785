"""Compressed gossip between sans-IO Peers: copies stay in sync, desyncs heal through
RESYNC and a keyframe, Choco's merge view and step reach the merger, bad DIFFs are
rejected and counted without touching the receiver's state."""

from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rumor.aggregation.layout import single_tensor_layout
from rumor.node.engine.compression import CompressionHook
from rumor.protocols import codec
from rumor.protocols.choco import DifferenceGossip
from rumor.protocols.events import (
    Merge,
    MergeDone,
    MessageReceived,
    PeerDiscovered,
    Send,
    Start,
    TrainingDone,
)
from rumor.protocols.messages import CompressedBody, Kind
from rumor.protocols.peer import Peer, PeerConfig
from rumor.protocols.validation import ValidationConfig
from tests.helpers import SWARM, ident

D = 64


def peer(i: int, spec: str | None, **kw: object) -> Peer:
    hook = CompressionHook.from_text(spec, single_tensor_layout(D), seed=i)
    s = hook.spec
    cfg = PeerConfig(validation=ValidationConfig(swarm=SWARM, shape=(D,)),
                     feedback=s.feedback if s else "ef", eta=s.eta if s else 1.0,
                     gamma=s.gamma if s else 1.0, catch_up=False, **kw)  # type: ignore[arg-type]
    return Peer(ident(i), cfg, compression=hook)


def kinds(cmds: list[object]) -> list[str]:
    out = []
    for c in cmds:
        if isinstance(c, Send):
            out.append(codec.decode(c.data, swarm=SWARM).kind.value)
    return out


def train(p: Peer, x: np.ndarray, now: float = 1.0) -> list[object]:
    return p.handle(TrainingDone(p.round, x.astype(np.float32), 10, now))  # type: ignore[return-value]


def deliver(cmds: list[object], to: Peer, now: float = 1.0) -> list[object]:
    out: list[object] = []
    for c in cmds:
        if isinstance(c, Send) and c.to == to.peer_id:
            sender = codec.decode(c.data, swarm=SWARM, verify_signature=False).sender
            from rumor.protocols.identity import peer_id_from_bytes
            out += to.handle(MessageReceived(peer_id_from_bytes(sender), c.data, now))
    return out


def pair(spec: str) -> tuple[Peer, Peer]:
    a, b = peer(1, spec), peer(2, spec)
    for x, y in ((a, b), (b, a)):
        x.handle(PeerDiscovered(y.peer_id, 0.0))
        x.handle(Start(0.0))
    return a, b


def test_first_message_is_a_keyframe_then_differences_and_copies_match() -> None:
    a, b = pair("topk:ratio=0.25")
    rng = np.random.default_rng(0)
    x = rng.standard_normal(D).astype(np.float32)
    out = train(a, x)
    assert kinds(out) == ["diff"]
    body = codec.decode(next(c for c in out if isinstance(c, Send)).data, swarm=SWARM).body
    assert isinstance(body, CompressedBody) and body.base == 0  # keyframe
    deliver(out, b)
    track = a.choco.track_of(b.peer_id)
    assert track is not None
    np.testing.assert_array_equal(b.choco.copies[a.peer_id].vector, track.public)
    # next round: a difference on top of the keyframe, again in sync
    b_out = train(b, rng.standard_normal(D))
    merges = [c for c in deliver(b_out, a) if isinstance(c, Merge)]
    assert len(merges) == 1 and merges[0].step == 0.3  # top-k's default gamma
    a.handle(MergeDone(0, x, 2.0))
    out = train(a, x + rng.standard_normal(D).astype(np.float32))
    body = codec.decode(next(c for c in out if isinstance(c, Send)).data, swarm=SWARM).body
    assert isinstance(body, CompressedBody) and body.scheme == "sparse" and body.base > 0
    deliver(out, b)
    np.testing.assert_array_equal(b.choco.copies[a.peer_id].vector,
                                  a.choco.track_of(b.peer_id).public)  # type: ignore[union-attr]


def test_merge_sees_chocos_view_and_takes_gamma_as_its_step() -> None:
    a, b = peer(1, "topk:ratio=0.5,gamma=0.25"), peer(2, "topk:ratio=0.5")
    for x, y in ((a, b), (b, a)):
        x.handle(PeerDiscovered(y.peer_id, 0.0))
        x.handle(Start(0.0))
    xa, xb = np.ones(D, np.float32), np.full(D, 3.0, np.float32)
    out_a = train(a, xa)
    merges = [c for c in deliver(train(b, xb), a) if isinstance(c, Merge)]
    assert len(merges) == 1 and merges[0].step == 0.25
    deliver(out_a, b)
    mine = a.choco.track_of(b.peer_id).public  # type: ignore[union-attr]
    want = b.choco.track_of(a.peer_id).public + (xa - mine)  # type: ignore[union-attr]
    np.testing.assert_allclose(merges[0].updates[0].vector, want, rtol=1e-6)


def test_a_lost_difference_is_a_counted_desync_healed_by_resync_and_a_keyframe() -> None:
    a, b = pair("randk:ratio=0.25")
    rng = np.random.default_rng(1)
    deliver(train(a, rng.standard_normal(D)), b)  # keyframe arrives
    deliver(train(b, rng.standard_normal(D)), a)
    a.handle(MergeDone(0, rng.standard_normal(D).astype(np.float32), 2.0))
    b.handle(MergeDone(0, rng.standard_normal(D).astype(np.float32), 2.0))
    train(a, rng.standard_normal(D))  # round 1's difference is lost
    deliver(train(b, rng.standard_normal(D)), a)
    a.handle(MergeDone(1, rng.standard_normal(D).astype(np.float32), 3.0))
    b.handle(MergeDone(1, rng.standard_normal(D).astype(np.float32), 3.0))
    out = train(a, rng.standard_normal(D))  # round 2's difference: wrong base at b
    answer = deliver(out, b)
    assert b.validator.rejects["desync"] == 1 and kinds(answer) == ["resync"]
    keyframe = deliver(answer, a)
    assert kinds(keyframe) == ["diff"] and a.counters["resync"] == 1
    deliver(keyframe, b)
    np.testing.assert_array_equal(b.choco.copies[a.peer_id].vector,
                                  a.choco.track_of(b.peer_id).public)  # type: ignore[union-attr]


def test_a_bad_diff_is_rejected_and_changes_nothing() -> None:
    a, b = pair("topk:ratio=0.25")
    out = train(a, np.ones(D))
    deliver(out, b)
    before = b.choco.copies[a.peer_id].vector.copy()
    bad = CompressedBody("sparse", D, np.ones(2, "<f4").tobytes(), base=1,
                         indices=np.array([5, 3], "<u2").tobytes())
    raw = codec.encode(Kind.DIFF, swarm=SWARM, sender=a.identity, round_=0, seq=50,
                       sent_at=0.0, body=bad)
    b.handle(MessageReceived(a.peer_id, raw, 1.0))
    assert b.validator.rejects["bad_compressed"] == 1
    np.testing.assert_array_equal(b.choco.copies[a.peer_id].vector, before)
    nan = dataclasses.replace(bad, indices=np.array([3, 5], "<u2").tobytes(),
                              values=np.array([1, np.nan], "<f4").tobytes())
    raw = codec.encode(Kind.DIFF, swarm=SWARM, sender=a.identity, round_=0, seq=51,
                       sent_at=0.0, body=nan)
    b.handle(MessageReceived(a.peer_id, raw, 1.0))
    assert b.validator.rejects["nan_inf"] == 1


def test_a_peer_that_does_not_compress_still_decodes_compressed_neighbours() -> None:
    a, b = peer(1, "qsgd:bits=8"), peer(2, None)
    for x, y in ((a, b), (b, a)):
        x.handle(PeerDiscovered(y.peer_id, 0.0))
        x.handle(Start(0.0))
    x = np.linspace(-1, 1, D).astype(np.float32)
    deliver(train(a, x), b)
    out = train(b, np.zeros(D))
    assert kinds(out) == ["update"]
    assert np.abs(b.choco.copies[a.peer_id].vector - x).max() < 0.01


@settings(max_examples=30, deadline=None)
@given(spec=st.sampled_from(["topk:ratio=0.1", "randk:ratio=0.2", "qsgd:bits=4",
                             "topk:ratio=0.1,feedback=none",
                             "topk:ratio=0.1,feedback=econtrol,eta=0.3"]),
       steps=st.lists(st.tuples(st.sets(st.integers(0, 3), min_size=1),
                                st.integers(0, 2**32 - 1)), min_size=1, max_size=12))
def test_receivers_copies_equal_the_senders_tracks_under_any_fanout(
        spec: str, steps: list[tuple[set[int], int]]) -> None:
    """Sending to random subsets (fanout) splits tracks; every receiver's copy is always
    exactly the public copy the sender believes it holds."""
    hook = CompressionHook.from_text(spec, single_tensor_layout(D))
    parsed = hook.spec
    assert parsed is not None
    sender = DifferenceGossip(hook, parsed.feedback, parsed.eta)
    receivers = {i: DifferenceGossip(CompressionHook.from_text(None, single_tensor_layout(D)))
                 for i in range(4)}
    seq = 0
    for targets, seed in steps:
        x = np.random.default_rng(seed).standard_normal(D).astype(np.float32)
        for members, track in sender.groups([str(t) for t in sorted(targets)]):
            seq += 1
            if track is None:
                body = sender.keyframe(x, members, seq=seq, seed=seed, num_samples=1)
            else:
                body = sender.difference(x, track, members, seq=seq, seed=seed,
                                         num_samples=1)
            decoded = hook.decompress(body, seed=seed)
            for m in members:
                assert receivers[int(m)].receive("s", body, decoded, seq) is not None
        for i, r in receivers.items():
            pub = sender.public_of(str(i))
            if pub is not None:
                np.testing.assert_array_equal(r.copies["s"].vector, pub)
    assert len(sender.tracks) <= 4
