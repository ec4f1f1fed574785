"""The round plan: which training rounds communicate, the budget rule, Q gossip steps
and the final merge (rumor.protocols.schedule)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rumor.protocols.errors import ConfigError
from rumor.protocols.schedule import RoundPlan, parse_schedule


def talking(spec: str, rounds: int) -> list[int]:
    s = parse_schedule(spec)
    return [r for r in range(rounds) if s.communicates(r, rounds)]


def test_hand_computed_schedules_of_ten_rounds() -> None:
    assert talking("constant", 10) == list(range(10))
    assert talking("every:2", 10) == [1, 3, 5, 7, 9]
    assert talking("every:3", 10) == [2, 5, 8, 9]  # the last round always talks
    # late:0.3:2 -> budget C = ceil(10/2) = 5; the last L = round(0.3*10) = 3 rounds
    # talk; the other 2 are spread over rounds 0..6: floor((r+1)*2/7) steps at r=3, 6
    assert talking("late:0.3:2", 10) == [3, 6, 7, 8, 9]
    # late:0.5 (K=2): the whole budget is the last half
    assert talking("late:0.5", 10) == [5, 6, 7, 8, 9]
    # a fraction larger than the budget is capped at the budget
    assert talking("late:0.9:2", 10) == [5, 6, 7, 8, 9]


@given(rounds=st.integers(1, 300), k=st.integers(1, 12),
       frac=st.floats(0.01, 1.0, allow_nan=False))
def test_late_spends_exactly_the_budget_of_every_k(rounds: int, k: int, frac: float) -> None:
    late = talking(f"late:{frac}:{k}", rounds)
    every = talking(f"every:{k}", rounds)
    assert len(late) == len(every) == -(-rounds // k)
    assert late[-1] == rounds - 1  # training ends with a communicating round
    tail = min(len(late), round(frac * rounds))
    assert late[len(late) - tail:] == list(range(rounds - tail, rounds))


def test_gossip_steps_and_final_merge_extend_the_plan() -> None:
    plan = RoundPlan("every:2", rounds=4, gossip_steps=3, final_merge=2)
    steps = [(s.train, s.communicate, s.training_round, s.final)
             for s in (plan.step(p) for p in range(plan.total or 0))]
    assert steps == [
        (True, False, 0, False),                                              # silent
        (True, True, 1, False), (False, True, 1, False), (False, True, 1, False),  # Q=3
        (True, False, 2, False),
        (True, True, 3, False), (False, True, 3, False), (False, True, 3, False),
        (False, True, 3, True), (False, True, 3, True),                       # final
    ]
    assert plan.total == 10 and plan.communications == 8
    assert RoundPlan().trivial and not plan.trivial


def test_a_plan_without_an_end_repeats_its_cycle() -> None:
    plan = RoundPlan("every:3", rounds=None, gossip_steps=2)
    assert plan.total is None
    got = [(plan.step(p).train, plan.step(p).communicate, plan.step(p).training_round)
           for p in range(8)]
    assert got == [(True, False, 0), (True, False, 1), (True, True, 2), (False, True, 2),
                   (True, False, 3), (True, False, 4), (True, True, 5), (False, True, 5)]
    finite = RoundPlan("every:3", rounds=6, gossip_steps=2)
    assert [finite.step(p) for p in range(8)] == [plan.step(p) for p in range(8)]


@pytest.mark.parametrize("spec", ["", "sometimes", "every", "every:0", "every:x", "late",
                                  "late:0", "late:1.5", "late:nan", "late:0.5:0",
                                  "constant:2", "late:0.5:2:1"])
def test_bad_schedules_are_config_errors(spec: str) -> None:
    with pytest.raises(ConfigError):
        parse_schedule(spec)


def test_plans_that_need_an_end_say_so() -> None:
    with pytest.raises(ConfigError, match="rounds"):
        RoundPlan("late:0.5", rounds=None)
    with pytest.raises(ConfigError, match="rounds"):
        RoundPlan("constant", rounds=None, final_merge=5)
    with pytest.raises(ConfigError):
        RoundPlan("constant", rounds=5, gossip_steps=0)
