"""The one engine: what every runtime runs for a peer.

- ``build_peer``: the Peer (rumor.protocols.peer) with its hooks, from one
  ProtocolConfig: the merger (rule, defense, guards) and, for a Byzantine peer, its
  adversary, and its compression hook (compressed gossip). The simulator and the
  asyncio node both build peers here.
- ``CommandExecutor``: the one interpreter of a Peer's commands; a runtime plugs in a
  ``Backend`` (how to send, train and keep the model) and nothing else.
"""

from rumor.node.engine.adversary import AttackAdversary, Collusion, data_label_map
from rumor.node.engine.build import build_peer, make_adversary, make_merger, needs_evaluator
from rumor.node.engine.compression import CompressionHook
from rumor.node.engine.evaluator import LocalEvaluator
from rumor.node.engine.executor import Backend, CommandExecutor
from rumor.node.engine.merge_batch import MergeBatch
from rumor.node.engine.merger import RuleMerger
from rumor.node.engine.shared_decode import SharedDecoder

__all__ = [
    "AttackAdversary",
    "Backend",
    "Collusion",
    "CommandExecutor",
    "CompressionHook",
    "LocalEvaluator",
    "MergeBatch",
    "RuleMerger",
    "SharedDecoder",
    "build_peer",
    "data_label_map",
    "make_adversary",
    "make_merger",
    "needs_evaluator",
]
