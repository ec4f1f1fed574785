"""Flags shared by ``rumor join`` and ``rumor launch`` (learning and protocol settings)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from rumor.node.assembly import NodeConfig
from rumor.scripts.comm_options import add_comm_flags, comm_values
from rumor.scripts.options import (
    COMPRESS_HELP,
    aggregator_flag,
    compress_spec,
    dataset_name,
    dir_path,
    model_name,
    nonneg_int,
    positive_float,
    positive_int,
    seed_int,
    split_spec,
)


def add_node_flags(p: Any) -> None:
    d = NodeConfig()
    g = p.add_argument_group("learning")
    g.add_argument("--swarm", default=d.swarm, help="swarm name; peers of other swarms are ignored")
    g.add_argument("--model", type=model_name, default=d.model, help="mlp | lenet5 | cnn")
    g.add_argument("--dataset", type=dataset_name, default=d.dataset,
                   help="digits | mnist | fashion-mnist")
    default_dir = os.environ.get("RUMOR_DATA_DIR")
    g.add_argument("--dataset-dir", type=dir_path, default=default_dir, metavar="DIR",
                   help="where `rumor data fetch` caches datasets (default: "
                   f"{default_dir or '$RUMOR_DATA_DIR, else ~/.cache/rumor/data'})")
    g.add_argument("--split", type=split_spec, default=d.split,
                   help="iid | dirichlet:ALPHA | shards:K")
    g.add_argument("--shards", type=positive_int, default=d.shards,
                   help="the training set is split into this many parts")
    g.add_argument("--seed", type=seed_int, default=d.seed, help="seed of the data split")
    aggregator_flag(g, d.aggregator)
    g.add_argument("--f", type=nonneg_int, default=d.f,
                   help="number of Byzantine neighbours the robust rules tolerate")
    g.add_argument("--lr", type=positive_float, default=d.lr, help="SGD learning rate")
    g.add_argument("--batch-size", type=positive_int, default=d.batch_size,
                   help="minibatch size of local training")
    g.add_argument("--local-epochs", type=positive_int, default=d.local_epochs,
                   help="passes over the local data per round")
    g.add_argument("--round-timeout", type=positive_float, default=d.round_timeout,
                   help="seconds to wait for neighbours' updates before merging")
    g.add_argument("--min-updates", type=nonneg_int, default=2,
                   help="merge once this many neighbours' updates arrived")
    g.add_argument("--fanout", type=positive_int, default=8,
                   help="push each update to this many random neighbours")
    add_comm_flags(p)
    g.add_argument("--compress", type=compress_spec, default=None, metavar="NAME[:k=v,...]",
                   help=COMPRESS_HELP)


def node_config(args: argparse.Namespace, *, shard: int | None, rounds: int | None) -> NodeConfig:
    return NodeConfig(
        swarm=args.swarm,
        model=args.model,
        dataset=args.dataset,
        dataset_dir=args.dataset_dir,
        split=args.split,
        shard=shard,
        shards=args.shards,
        seed=args.seed,
        aggregator=args.aggregator,
        f=args.f,
        lr=args.lr,
        batch_size=args.batch_size,
        local_epochs=args.local_epochs,
        rounds=rounds,
        round_timeout=args.round_timeout,
        min_updates=args.min_updates,
        fanout=args.fanout,
        **comm_values(args),
        compress=None if args.compress in (None, "none") else args.compress,
    )
