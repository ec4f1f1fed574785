"""Flags of communication and local optimization, shared by simulate, compare, launch
and join: ``--schedule``, ``--gossip-steps``, ``--final-merge [T]``, ``--optimizer``.

The values land in the run's config (SimulationConfig / NodeConfig fields of the same
names); their meaning is rumor.protocols.schedule's and rumor.node.optimizers'.
"""

from __future__ import annotations

import argparse
from typing import Any

from rumor.node.optimizers import OPTIMIZER_HELP
from rumor.protocols.schedule import SCHEDULE_HELP
from rumor.scripts.options import nonneg_int, optimizer_spec, positive_int, schedule_spec

#: rounds of gossip averaging that ``--final-merge`` without a value adds
DEFAULT_FINAL_MERGE = 30


def add_comm_flags(p: Any) -> None:
    g = p.add_argument_group("communication")
    g.add_argument("--schedule", type=schedule_spec, default="constant", metavar="SPEC",
                   help=f"which training rounds communicate: {SCHEDULE_HELP} "
                   "(default: constant; silent rounds train locally only)")
    g.add_argument("--gossip-steps", type=positive_int, default=1, metavar="Q",
                   help="exchange+merge steps per communicating round (DFedSAM-MGS; "
                   "default 1)")
    g.add_argument("--final-merge", type=nonneg_int, nargs="?", const=DEFAULT_FINAL_MERGE,
                   default=0, metavar="T",
                   help="after the last round, T rounds of gossip averaging (plain mean, "
                   f"no training) to the global average; T={DEFAULT_FINAL_MERGE} when "
                   "given without a value (default: off)")
    g.add_argument("--optimizer", type=optimizer_spec, default="sgd", metavar="SPEC",
                   help=f"local optimizer: {OPTIMIZER_HELP} (default: sgd)")


def comm_values(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields these flags set."""
    return {"schedule": args.schedule, "gossip_steps": args.gossip_steps,
            "final_merge": args.final_merge, "optimizer": args.optimizer}
