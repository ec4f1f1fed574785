"""Bristle on non-IID data with Byzantine peers: unseen classes are learned."""

from __future__ import annotations

from rumor.node.bristle import BristleConfig, compare


def test_bristle_learns_unseen_classes_better_than_averaging_under_label_flip() -> None:
    base = BristleConfig(peers=16, byzantine=3, view=12, rounds=8, alpha=0.1,
                         pretrain_epochs=20, seed=3)
    rows = {r["method"]: r for r in compare(base, ["label-flip"], ["bristle", "mean", "local"])}
    assert rows["local"]["acc_unseen"] == 0.0  # alone, a peer never learns what it lacks
    assert rows["local"]["unseen_classes_mean"] > 3
    assert rows["bristle"]["acc_unseen"] > 0.6
    assert rows["bristle"]["acc_unseen"] > rows["mean"]["acc_unseen"]
    assert rows["bristle"]["acc_seen"] > rows["mean"]["acc_seen"]
