"""The config layer on its own: `--set` parsing for every field type and every error, the range
check, unknown keys, and the Student-t interval the seeds summary prints."""

import dataclasses
import math

import pytest
from scipy import stats

from platform.summary import confidence_interval
from trainables.config import (
    ConfigError,
    apply_assignments,
    check_range,
    from_dict,
    parse_assignment,
    to_dict,
)


@dataclasses.dataclass(frozen=True)
class Example:
    count: int = 3
    """An integer."""
    rate: float = 0.5
    """A number."""
    flag: bool = False
    """A bool."""
    name: str = "a"
    """A string."""
    sizes: list = dataclasses.field(default_factory=lambda: [1, 2])
    """A list."""
    schedule: dict = dataclasses.field(default_factory=lambda: {"kind": "constant", "start": 1.0})
    """A dict."""

    def __post_init__(self):
        check_range(self, "[1, inf)", "count")
        check_range(self, "(0, 1]", "rate")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("count=7", ("count", 7)),
        ("rate=1e-3", ("rate", 0.001)),
        ("rate=1", ("rate", 1.0)),
        ("flag=true", ("flag", True)),
        ("flag=Off", ("flag", False)),
        ("flag=1", ("flag", True)),
        ("name=CartPole-v1", ("name", "CartPole-v1")),
        ("name = spaced ", ("name", "spaced")),
        ("sizes=[3, 3, 8, 8]", ("sizes", [3, 3, 8, 8])),
        (
            'schedule={"kind": "cosine", "start": 1, "end": 0.1}',
            ("schedule", {"kind": "cosine", "start": 1, "end": 0.1}),
        ),
        ("schedule.end=0.2", ("schedule.end", 0.2)),
        ("schedule.kind=linear", ("schedule.kind", "linear")),
    ],
)
def test_every_field_type_parses(text, expected):
    key, value = parse_assignment(Example, text, "example")
    assert (key, value) == expected
    assert type(value) is type(expected[1])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("count", "expected key=value"),
        ("cuont=3", "unknown config key 'cuont' for model 'example' (did you mean 'count'?); valid keys: count, flag,"),
        ("zzz=3", "unknown config key 'zzz' for model 'example'; valid keys:"),
        ("count=3.5", "config key 'count' is an integer, got '3.5'"),
        ("rate=fast", "config key 'rate' is a number, got 'fast'"),
        ("flag=maybe", "config key 'flag' is a bool, got 'maybe'; use true or false"),
        ("sizes=1,2", "config key 'sizes' is a list: write JSON"),
        ("schedule=cosine", "config key 'schedule' is a dict: write JSON"),
        ("count.sub=1", "'count' is not a dict field"),
    ],
)
def test_every_parse_error_is_one_line_naming_the_key(text, message):
    with pytest.raises(ConfigError) as err:
        parse_assignment(Example, text, "example")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_dotted_assignments_update_one_entry_of_a_dict():
    pairs = [parse_assignment(Example, t, "example") for t in ("schedule.kind=linear", "schedule.end=0.1", "count=4")]
    values = apply_assignments({"schedule": {"kind": "constant", "start": 2.0}}, pairs)
    assert values == {"schedule": {"kind": "linear", "start": 2.0, "end": 0.1}, "count": 4}
    assert from_dict(Example, values, "example").schedule["start"] == 2.0


def test_from_dict_converts_what_tune_hands_over_and_rejects_the_rest():
    import numpy as np

    cfg = from_dict(Example, {"count": np.int64(5), "rate": 1, "sizes": (np.int64(1),)}, "example")
    assert cfg.count == 5 and type(cfg.count) is int and cfg.rate == 1.0 and type(cfg.rate) is float
    assert cfg.sizes == [1] and type(cfg.sizes[0]) is int
    assert to_dict(cfg)["count"] == 5
    for values, message in [
        ({"count": "5"}, "config key 'count' must be int, got '5'"),
        ({"flag": 1}, "config key 'flag' must be bool, got 1"),
        ({"count": True}, "config key 'count' must be int, got True"),
        ({"count": 0}, "example: count must be >= 1, got 0"),
        ({"rate": 0.0}, "example: rate must be in (0, 1], got 0.0"),
        ({"nope": 1}, "unknown config key 'nope' for model 'example'"),
    ]:
        with pytest.raises(ConfigError, match=None) as err:
            from_dict(Example, values, "example")
        assert message in str(err.value), (values, str(err.value))


@pytest.mark.parametrize(
    ("interval", "good", "bad", "message"),
    [
        ("[1, inf)", [1, 2, 10**9], [0, -1], "x must be >= 1, got"),
        ("(0, inf)", [1e-12, 5.0], [0.0, -1.0], "x must be > 0, got"),
        ("(0, 1]", [1e-9, 1.0], [0.0, 1.0001], "x must be in (0, 1], got"),
        ("[0, 1)", [0.0, 0.999], [1.0, -0.1], "x must be in [0, 1), got"),
        ("[-1, inf)", [-1, 0, 3], [-2], "x must be >= -1, got"),
    ],
)
def test_check_range_edges(interval, good, bad, message):
    for value in good:
        check_range(type("C", (), {"x": value}), interval, "x")
    for value in bad:
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
            check_range(type("C", (), {"x": value}), interval, "x")


def test_confidence_interval_matches_the_student_t_formula():
    values = [2.0, 4.0, 4.0, 5.0, 7.0, 9.0]
    mean, std, low, high = confidence_interval(values)
    assert mean == pytest.approx(31 / 6)
    assert std == pytest.approx(math.sqrt(sum((v - 31 / 6) ** 2 for v in values) / 5))
    # t(0.975, 5 df) = 2.5706: the half-width of a 95% interval of the mean of six values.
    assert high - mean == pytest.approx(2.5706 * std / math.sqrt(6), rel=1e-4)
    assert mean - low == pytest.approx(high - mean)
    assert (low, high) == pytest.approx(stats.t.interval(0.95, 5, loc=mean, scale=std / math.sqrt(6)))
    # 99% is wider; one value has no spread to estimate, so zero width (the summary prints n).
    assert confidence_interval(values, 0.99)[3] > high
    one = confidence_interval([3.0])  # no spread to estimate from one value: no interval, not a zero-width one
    assert one[0] == 3.0 and all(math.isnan(v) for v in one[1:])
