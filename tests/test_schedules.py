import math

import pytest

from search_spaces.dqn import epsilon_decay_per_episode
from trainables import schedules


@pytest.mark.parametrize(
    ("spec", "progress", "expected"),
    [
        ({"kind": "constant", "start": 0.3}, 0.7, 0.3),
        ({"kind": "linear", "start": 1.0, "end": 0.0}, 0.25, 0.75),
        ({"kind": "exp", "start": 1.0, "end": 0.01}, 0.5, 0.1),
        ({"kind": "cosine", "start": 1.0, "end": 0.0}, 0.5, 0.5),
        ({"kind": "cosine", "start": 1.0, "end": 0.2}, 1.0, 0.2),
        ({"kind": "step", "start": 1.0, "every": 0.25, "factor": 0.5}, 0.6, 0.25),
        ({"kind": "linear", "start": 1.0, "end": 0.0, "warmup": 0.2}, 0.1, 0.5),
        ({"kind": "linear", "start": 1.0, "end": 0.0, "warmup": 0.2}, 0.6, 0.5),
    ],
)
def test_values(spec, progress, expected):
    assert schedules.value(schedules.validate(spec), progress) == pytest.approx(expected)


def test_exp_decay_matches_multiplying_each_episode():
    # The research's "epsilon *= .995 per episode" is an exp schedule over the same episodes.
    values = epsilon_decay_per_episode(0.995, floor=0.05)
    spec, horizon = schedules.validate(values["epsilon"]), values["epsilon_horizon"]
    eps = 1.0
    for episode in range(horizon + 1):
        assert schedules.value(spec, episode / horizon) == pytest.approx(eps, rel=1e-9)
        eps *= 0.995


def test_progress_is_clipped():
    spec = schedules.validate({"kind": "linear", "start": 2.0, "end": 1.0})
    assert schedules.value(spec, -1) == 2.0 and schedules.value(spec, 5) == 1.0


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"kind": "sine", "start": 1}, "kind must be one of"),
        ({"kind": "linear", "start": 1}, "needs 'end'"),
        ({"kind": "linear", "start": 1, "end": 0, "rate": 2}, "unknown key 'rate'"),
        ({"kind": "exp", "start": 0, "end": 1}, "start > 0"),
        ({"kind": "constant", "start": math.nan}, "finite number"),
        ({"kind": "constant", "start": 1, "warmup": 1.5}, "warmup"),
        ("cosine", "must be a dict"),
    ],
)
def test_bad_schedules_name_the_problem(spec, message):
    with pytest.raises(schedules.ScheduleError, match=message):
        schedules.validate(spec, "lr_schedule")
