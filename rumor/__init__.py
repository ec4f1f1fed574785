"""rumor: a decentralized gossip-learning peer.

The import names rumor.node, rumor.protocols, rumor.aggregation, rumor.topology and
rumor.scripts live in the repository's top-level folders (the design card fixes them);
rumor/<name> are relative symlinks to ../<name>, so editors (Pyright, Jedi) and mypy
resolve ``rumor.*`` from the repository root without an import hook. Built wheels
contain the files themselves, not the links.
"""
