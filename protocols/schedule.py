"""Communication schedules and the round plan: which protocol rounds train, which talk.

A *training round* is one round of local training (``rounds`` of them). A *protocol
round* is one pass of the Peer's state machine (train and/or exchange+merge); its
number is what travels on the wire, what metrics.csv counts and what catch-up compares.
Without a schedule, gossip steps or a final merge the two are the same.

Schedules (``--schedule``; R = training rounds, C = the budget, the number of training
rounds that communicate)::

    constant      every training round communicates                  C = R
    every:K       rounds r with (r + 1) % K == 0, and the last one   C = ceil(R / K)
    late:F[:K]    the same budget as every:K (K = 2 unless given):   C = ceil(R / K)
                  the last L = min(C, round(F * R)) rounds communicate, the other
                  C - L are spread evenly over the first R - L rounds (round r < R - L
                  communicates when floor((r+1)(C-L)/(R-L)) > floor(r(C-L)/(R-L)))

The budget rule: ``late:F:K`` and ``every:K`` spend exactly the same number of
communicating rounds, hence the same bytes (a communicating round costs the same in
both), so comparing them is a comparison at equal total communication; ``constant``
is every:1. ``late`` needs a known number of rounds; ``every:K`` without one repeats
its pattern forever. A round that does not communicate trains locally only: no
UPDATE is sent, nothing is merged, the trained model is kept.

Gossip steps (``--gossip-steps Q``, DFedSAM-MGS): a communicating training round is
followed by Q - 1 further exchange+merge protocol rounds without training, so its
model is mixed Q times (each step: send the current model to the neighbours, wait for
theirs, merge with the peer's rule) before the next training starts.

Final merge (``--final-merge T``): after the last training round, T protocol rounds of
exchange+merge without training in which the merge is the plain mean of the peer's own
model and the received ones (gossip averaging): on a connected graph every model
converges to the same average, the global mean of all models on a regular graph (with
uniform weights the limit on an irregular graph weights peer i by deg_i + 1).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from rumor.protocols.errors import ConfigError

SCHEDULE_NAMES = ("constant", "every", "late")
SCHEDULE_HELP = ("constant | every:K | late:FRACTION[:K] (late: every round in the last "
                 "FRACTION of training, the same total communications as every:K, K=2)")


@dataclass(frozen=True)
class Schedule:
    """A parsed ``--schedule``: ``kind`` in SCHEDULE_NAMES, ``k`` (every/late) and
    ``fraction`` (late)."""

    kind: str = "constant"
    k: int = 1
    fraction: float = 0.0

    @property
    def spec(self) -> str:
        if self.kind == "constant":
            return "constant"
        if self.kind == "every":
            return f"every:{self.k}"
        return f"late:{self.fraction:g}:{self.k}"

    def needs_rounds(self) -> bool:
        return self.kind == "late"

    def budget(self, rounds: int) -> int:
        """C: how many of ``rounds`` training rounds communicate."""
        return -(-rounds // self.k)

    def communicates(self, r: int, rounds: int | None) -> bool:
        """Whether training round ``r`` (0-based) of ``rounds`` communicates."""
        if self.kind == "constant":
            return True
        if self.kind == "every":
            return (r + 1) % self.k == 0 or (rounds is not None and r == rounds - 1)
        if rounds is None:
            raise ConfigError(f"schedule {self.spec!r} needs a number of rounds")
        c = self.budget(rounds)
        late = min(c, round(self.fraction * rounds))
        early_rounds, early_budget = rounds - late, c - late
        if r >= early_rounds:
            return True
        return (r + 1) * early_budget // early_rounds > r * early_budget // early_rounds


def parse_schedule(text: str) -> Schedule:
    """``constant`` | ``every:K`` (K >= 1) | ``late:F`` | ``late:F:K`` (F in (0, 1])."""
    parts = text.strip().split(":")
    kind = parts[0]
    if kind == "constant" and len(parts) == 1:
        return Schedule()
    try:
        if kind == "every" and len(parts) == 2:
            k = int(parts[1])
            if k < 1:
                raise ValueError
            return Schedule("every", k)
        if kind == "late" and len(parts) in (2, 3):
            frac = float(parts[1])
            k = int(parts[2]) if len(parts) == 3 else 2
            if not (math.isfinite(frac) and 0.0 < frac <= 1.0) or k < 1:
                raise ValueError
            return Schedule("late", k, frac)
    except ValueError:
        pass
    raise ConfigError(f"bad schedule {text!r}; expected {SCHEDULE_HELP}")


@dataclass(frozen=True)
class Step:
    """What protocol round p does: ``train`` locally first (else the model is only
    mixed), then ``communicate`` (exchange + merge; else keep the trained model);
    ``final``: a final-merge step (plain mean). ``training_round``: the training
    round it belongs to (the last one for final-merge steps)."""

    train: bool
    communicate: bool
    training_round: int
    final: bool = False


class RoundPlan:
    """Protocol round -> Step for a schedule, Q gossip steps and T final-merge rounds.

    ``total``: protocol rounds in all (None when ``rounds`` is None: no end).
    """

    def __init__(self, schedule: Schedule | str = "constant", rounds: int | None = None,
                 gossip_steps: int = 1, final_merge: int = 0) -> None:
        sched = parse_schedule(schedule) if isinstance(schedule, str) else schedule
        if gossip_steps < 1:
            raise ConfigError(f"gossip steps must be >= 1, got {gossip_steps}")
        if final_merge < 0:
            raise ConfigError(f"final merge rounds must be >= 0, got {final_merge}")
        if rounds is None and sched.needs_rounds():
            raise ConfigError(f"schedule {sched.spec!r} needs a number of rounds (--rounds)")
        if rounds is None and final_merge:
            raise ConfigError("--final-merge needs a number of rounds (--rounds)")
        self.schedule = sched
        self.rounds = rounds
        self.q = gossip_steps
        self.final_merge = final_merge
        self._trivial = sched.kind == "constant" and gossip_steps == 1 and not final_merge
        # trivial: step p is (train, communicate, p), nothing to store (MoDeST runs with
        # rounds in the millions); else one shared tuple per distinct plan.
        self._steps: tuple[Step, ...] | None = None
        if rounds is not None and not self._trivial:
            self._steps = _plan_steps(sched, rounds, gossip_steps, final_merge)

    @property
    def trivial(self) -> bool:
        """Every protocol round trains and communicates once (no plan in effect)."""
        return self._trivial

    @property
    def total(self) -> int | None:
        if self._trivial:
            return self.rounds
        return None if self._steps is None else len(self._steps)

    @property
    def communications(self) -> int | None:
        """Protocol rounds that exchange models (the byte budget, final merge included)."""
        if self._trivial:
            return self.rounds
        return None if self._steps is None else sum(s.communicate for s in self._steps)

    def step(self, p: int) -> Step:
        if self._trivial and self.rounds is not None:
            return Step(True, True, max(0, min(p, self.rounds - 1)))
        if self._steps is not None:
            return self._steps[min(p, len(self._steps) - 1)] if self._steps else Step(
                True, True, 0)
        # no end: every:K (constant = every:1) repeats K - 1 silent rounds, then Q steps
        k = self.schedule.k if self.schedule.kind == "every" else 1
        cycle = k - 1 + self.q
        c, o = divmod(p, cycle)
        if o < k - 1:
            return Step(True, False, c * k + o)
        return Step(o == k - 1, True, c * k + k - 1)

    def describe(self) -> dict[str, object]:
        """What summary.json records about the plan."""
        return {"schedule": self.schedule.spec, "gossip_steps": self.q,
                "final_merge": self.final_merge, "training_rounds": self.rounds,
                "protocol_rounds": self.total, "communicating_rounds": self.communications,
                "budget": None if self.rounds is None else self.schedule.budget(self.rounds)}


@functools.lru_cache(maxsize=64)
def _plan_steps(sched: Schedule, rounds: int, gossip_steps: int,
                final_merge: int) -> tuple[Step, ...]:
    """Every protocol round's Step for a non-trivial plan (shared by all peers)."""
    steps: list[Step] = []
    for r in range(rounds):
        if sched.communicates(r, rounds):
            steps += [Step(s == 0, True, r) for s in range(gossip_steps)]
        else:
            steps.append(Step(True, False, r))
    steps += [Step(False, True, rounds - 1, final=True)] * final_merge
    return tuple(steps)
