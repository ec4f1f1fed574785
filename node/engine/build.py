"""build_peer: the one place a Peer and its hooks are made from a ProtocolConfig."""

from __future__ import annotations

import hashlib

from rumor.aggregation.compression import parse_spec
from rumor.aggregation.layout import Layout
from rumor.node.attacks import parse_attack
from rumor.node.engine.adversary import AttackAdversary, Collusion
from rumor.node.engine.compression import CompressionHook
from rumor.node.engine.merger import RuleMerger
from rumor.protocols import codec
from rumor.protocols.config import ProtocolConfig
from rumor.protocols.errors import ConfigError
from rumor.protocols.events import PeerId
from rumor.protocols.hooks import Evaluator
from rumor.protocols.identity import Identity
from rumor.protocols.peer import Peer, PeerConfig, Role
from rumor.protocols.validation import Decode, ValidationConfig


def peer_seed(peer_id: str) -> int:
    """A peer's own seed: a stable hash of its PeerID."""
    return int.from_bytes(hashlib.sha256(peer_id.encode()).digest()[:4], "big")


#: Defenses that evaluate candidates on the peer's local data at merge time.
EVALUATED = frozenset({"bristle"})


def needs_evaluator(aggregator: str) -> bool:
    """True when ``build_peer`` must be given an ``evaluator`` for this rule."""
    return aggregator in EVALUATED


def make_merger(proto: ProtocolConfig, layout: Layout, seed: int,
                evaluator: Evaluator | None = None) -> RuleMerger:
    return RuleMerger(proto.aggregator, f=proto.f, layout=layout,
                      rule_params=proto.rule_params, seed=seed, max_abs=proto.max_abs,
                      evaluator=evaluator)


def make_adversary(proto: ProtocolConfig, *, view: int, seed: int,
                   collusion: Collusion | None = None,
                   member: int = 0) -> AttackAdversary | None:
    """The adversary of a peer whose ``proto.attack`` is set; ``view`` is a typical
    view size (neighbours + 1), the n of attacks that compute z from n and f."""
    if proto.attack is None:
        return None
    return AttackAdversary(parse_attack(proto.attack), n=view, f=proto.f, seed=seed,
                           collusion=collusion, member=member)


def build_peer(
    identity: Identity,
    proto: ProtocolConfig,
    *,
    dimension: int,
    layout: Layout,
    role: Role = Role.GOSSIP,
    server: PeerId | None = None,
    seed: int | None = None,
    view: int = 9,
    collusion: Collusion | None = None,
    member: int = 0,
    evaluator: Evaluator | None = None,
    decode: Decode = codec.decode,
) -> Peer:
    """A Peer with its merger, its compression hook (every peer decodes compressed
    gossip; it compresses when ``proto.compress`` names a compressor) and (when
    ``proto.attack`` is set) its adversary.

    ``evaluator``: the peer's own local data (per-class F1 of model vectors), provided
    by the runtime's learner; required by the rules in ``EVALUATED`` (bristle).
    ``decode``: the Validator's decoder (``codec.decode``; the simulator shares a memo).
    Received UPDATE bytes are kept for HISTORY forwarding only when the merger
    forwards (a gossiping defense)."""
    if needs_evaluator(proto.aggregator) and evaluator is None:
        raise ConfigError(f"aggregator {proto.aggregator!r} needs the peer's evaluator")
    s = peer_seed(identity.peer_id) if seed is None else seed
    spec = parse_spec(proto.compress)
    vcfg = ValidationConfig(
        swarm=proto.swarm,
        shape=(dimension,),
        verify_signatures=proto.sign,
        max_lag=proto.max_lag,
        max_ahead=proto.max_ahead,
        flood_rate=proto.flood_rate,
        flood_burst=proto.flood_burst,
    )
    merger = make_merger(proto, layout, s, evaluator)
    pcfg = PeerConfig(
        validation=vcfg,
        role=role,
        rounds=proto.rounds,
        round_timeout=proto.round_timeout,
        min_updates=proto.min_updates,
        fanout=proto.fanout,
        sign=proto.sign,
        server=server,
        adopt_senders=proto.adopt_senders,
        max_adopted=proto.max_adopted,
        max_neighbours=proto.max_neighbours,
        evict_after=proto.evict_after,
        wait_when_alone=proto.wait_when_alone,
        catch_up=proto.catch_up,
        catch_up_gap=proto.catch_up_gap,
        polyak_beta=proto.effective_polyak_beta(),
        keep_raw=merger.forwards,
        seed=s,
        schedule=proto.schedule,
        gossip_steps=proto.gossip_steps,
        final_merge=proto.final_merge,
        feedback=spec.feedback if spec is not None else "ef",
        eta=spec.eta if spec is not None else 1.0,
        gamma=spec.gamma if spec is not None else 1.0,
    )
    return Peer(identity, pcfg, merger=merger,
                adversary=make_adversary(proto, view=view, seed=s, collusion=collusion,
                                         member=member),
                compression=CompressionHook(spec, layout, s), decode=decode)
