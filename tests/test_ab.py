"""platform.ab's statistics: delta-method lifts against a bootstrap, the paired design's variance,
CUPED, power, mSPRT under peeking, A/A calibration of both designs, and --replay."""

import json
import math

import numpy as np
import pytest

from envs import music
from platform import ab, ab_stats
from trainables.music import arms as music_arms


@pytest.fixture(scope="module")
def random_vs_sticky():
    """Per-user primary metric of 1,500 users under random and under sticky (the same users)."""
    cfg, users = music.MusicConfig(), np.arange(1_500)
    out = {}
    for name, arm in (("random", music_arms.Random()), ("sticky", music_arms.StickyArtist())):
        out[name] = ab.per_user(music.simulate(cfg, arm, 5, users), users)[ab.PRIMARY]
    return out


def test_delta_method_lift_interval_agrees_with_a_bootstrap_and_the_naive_one_does_not(random_vs_sticky):
    """sticky vs random is a large lift (about +160%): the control's own noise widens its interval."""
    control, treatment = random_vs_sticky["random"][:750], random_vs_sticky["sticky"][750:]  # split: other users
    test = ab_stats.compare(ab_stats.Sample(treatment, control), 0.05, ab_stats.SPLIT)
    boot = ab_stats.bootstrap_relative(treatment, control, paired=False, alpha=0.05)
    half = (boot[1] - boot[0]) / 2
    assert test["relative"] > 1.0
    assert abs(test["rel_low"] - boot[0]) < 0.15 * half and abs(test["rel_high"] - boot[1]) < 0.15 * half
    naive = ab_stats.naive_relative(treatment, control, 0.05)
    assert (naive[1] - naive[0]) / 2 < 0.7 * half  # the interval the issue found too narrow


def test_paired_intervals_agree_with_a_paired_bootstrap_and_are_narrower(random_vs_sticky):
    control, treatment = random_vs_sticky["random"], random_vs_sticky["sticky"]
    paired = ab_stats.compare(ab_stats.Sample(treatment, control), 0.05, ab_stats.PAIRED)
    boot = ab_stats.bootstrap_relative(treatment, control, paired=True, alpha=0.05)
    half = (boot[1] - boot[0]) / 2
    assert abs(paired["rel_low"] - boot[0]) < 0.15 * half and abs(paired["rel_high"] - boot[1]) < 0.15 * half
    # the same users analysed as if independent: wider by the measured variance ratio
    split = ab_stats.compare(ab_stats.Sample(treatment, control), 0.05, ab_stats.SPLIT)
    d = treatment - control
    assert paired["pairing"] == pytest.approx((treatment.var(ddof=1) + control.var(ddof=1)) / d.var(ddof=1))
    assert paired["pairing"] > 1.1
    assert split["high"] - split["low"] == pytest.approx((paired["high"] - paired["low"]) * paired["pairing"] ** 0.5,
                                                         rel=0.01)  # fmt: skip


def test_paired_design_runs_every_user_through_every_arm_on_common_random_numbers():
    cfg = music.MusicConfig()
    arms = {"sticky": music_arms.StickyArtist(), "sticky#b": music_arms.StickyArtist(), "random": music_arms.Random()}
    result = ab.run_ab(cfg, arms, 300, seed=2, salt="t", alpha=0.05, design=ab_stats.PAIRED)
    assert [a["users"] for a in result["arms"].values()] == [300, 300, 300]
    same = result["effects"]["sticky#b"]
    # one deterministic arm twice on the same users and the same draws: exactly no difference
    assert all(same[m]["diff"] == 0 and not same[m]["significant"] for m in ab.METRICS)
    assert result["effects"]["random"][ab.PRIMARY]["significant"]
    # two random arms with their own streams differ user by user, not on average
    aa = ab.run_ab(cfg, {"a": music_arms.Random(), "b": music_arms.Random(stream=1)}, 300, 2, "t", 0.05, "paired")
    assert aa["effects"]["b"][ab.PRIMARY]["se"] > 0 and not aa["effects"]["b"][ab.PRIMARY]["significant"]


def test_the_oracle_picks_the_best_track_of_the_whole_catalogue(monkeypatch):
    """The oracle's shortlist (kept short here, so that sessions use it up and draw new ones) picks a
    track worth as much as the best of the whole catalogue at every step."""
    monkeypatch.setattr(music, "ORACLE_SHORTLIST", 4)
    cfg = music.MusicConfig(tracks=600, artists=60)
    s = music.Sessions(cfg, 3, np.arange(40), np.zeros(40, np.int64))
    everything = np.broadcast_to(np.arange(600), (40, 600))
    for _ in range(30):
        pick = s.best_expected()
        best = s.expected(everything).max(1)
        assert np.allclose(s.expected(pick[:, None])[:, 0], best, rtol=1e-6, atol=0)
        s.play(pick)
    assert s.steps.max() > 8  # long enough for shortlists of 4 to run out


def test_families_primary_and_secondary_have_their_own_bonferroni_levels():
    cfg = music.MusicConfig()
    arms = {
        "random": music_arms.Random(),
        "sticky": music_arms.StickyArtist(),
        "fallback": music_arms.StickyArtist(True),
    }
    result = ab.run_ab(cfg, arms, 600, seed=1, salt="t", alpha=0.05)
    for effects in result["effects"].values():
        assert effects[ab.PRIMARY]["family"] == "primary" and effects[ab.PRIMARY]["level"] == pytest.approx(0.025)
        for metric in ab.SECONDARY:
            assert effects[metric]["family"] == "secondary" and effects[metric]["level"] == pytest.approx(0.05 / 6)
    text = ab.table(result, power=0.8, lift=0.05)
    assert "primary metric time_per_session" in text and "secondary metrics" in text and "needs" in text


def test_cuped_reduces_the_variance_and_keeps_the_estimate():
    cfg = music.MusicConfig()
    arms = {"random": music_arms.Random(), "sticky": music_arms.StickyArtist()}
    plain = ab.run_ab(cfg, arms, 1_500, seed=4, salt="t", alpha=0.05)
    adjusted = ab.run_ab(cfg, arms, 1_500, seed=4, salt="t", alpha=0.05, cuped=True)
    before, after = plain["effects"]["sticky"][ab.PRIMARY], adjusted["effects"]["sticky"][ab.PRIMARY]
    assert after["cuped"] > 1.05 and after["cuped"] == pytest.approx((before["se"] / after["se"]) ** 2, rel=1e-6)
    assert abs(after["diff"] - before["diff"]) < 2 * before["se"]


def test_power_and_mde_are_inverse_and_match_the_normal_formula():
    need = ab_stats.users_needed(unit_var=8.0, control_mean=2.0, lift=0.05, alpha=0.05, power=0.8)
    assert need == pytest.approx((1.959964 + 0.841621) ** 2 * 8.0 / 0.1**2, rel=1e-5)
    assert ab_stats.mde(8.0, 2.0, round(need), 0.05, 0.8) == pytest.approx(0.05, rel=1e-3)


def test_msprt_stays_valid_under_peeking_where_the_fixed_horizon_test_does_not():
    """1,000 A/A streams of paired differences analysed at 20 looks: stopping at the first
    fixed-horizon p < 0.05 claims a difference far more than 5% of the time; mSPRT's p does not."""
    from scipy import stats

    rng = np.random.default_rng(0)
    streams, looks, per_look, alpha = 1_000, 20, 50, 0.05
    d = rng.normal(0.0, 1.0, (streams, looks * per_look))
    naive, always = np.zeros(streams, bool), np.ones(streams)
    for j in range(1, looks + 1):
        seen = d[:, : j * per_look]
        mean, var = seen.mean(1), seen.var(1, ddof=1) / seen.shape[1]
        naive |= 2 * stats.norm.sf(np.abs(mean) / np.sqrt(var)) < alpha
        ratio = np.array([ab_stats.msprt(m, v, tau=0.1) for m, v in zip(mean, var)])
        always = np.minimum(always, 1 / ratio)
    assert naive.mean() > 0.15
    assert (always <= alpha).mean() <= alpha + 0.02


def _aa_ok(calibration: dict, families_rate: float = 0.05) -> None:
    """Not grossly miscalibrated: no metric's false-positive count beyond the binomial 99.9% upper
    bound of its family's nominal rate (secondary metrics: each at alpha / 3, any of them at alpha)."""
    from scipy import stats

    runs = calibration["runs"]
    top = lambda rate: stats.binom.ppf(0.999, runs, rate)  # noqa: E731
    counts = calibration["counts"]
    assert counts[ab.PRIMARY] <= top(families_rate), counts
    assert counts["any secondary"] <= top(families_rate), counts
    assert all(counts[m] <= top(families_rate / len(ab.SECONDARY)) for m in ab.SECONDARY), counts


@pytest.mark.slow
@pytest.mark.parametrize("design", ab_stats.DESIGNS)
def test_aa_tests_are_not_grossly_miscalibrated(design):
    """80 A/A tests per design (the docs record 200+): the false-positive counts stay in binomial range,
    and the rate is not zero everywhere (a test that can never fire is not calibrated either)."""
    users = 400 if design == ab_stats.SPLIT else 200  # the same 200 users per arm
    calibration = ab.aa_runs(design, 80, users)
    _aa_ok(calibration)
    assert sum(calibration["counts"][m] for m in ab.METRICS) > 0


def test_replay_reruns_an_ab_to_the_same_figures(tmp_path, capsys):
    argv = ["music", "random", "sticky", "--users", "300", "--seed", "3", "--salt", "s1", "--design", "paired",
            "--cuped", "--looks", "3", "--storage", str(tmp_path), "--name", "first"]  # fmt: skip
    assert ab.run(argv) == 0
    record = json.loads((tmp_path / "first" / "ab.json").read_text())
    settings = record["settings"]
    assert (settings["seed"], settings["users"], settings["salt"], settings["design"]) == (3, 300, "s1", "paired")
    assert [a["spec"] for a in settings["arms"]] == ["random", "sticky"] and record["commit"]
    assert settings["arms"][1]["settings"] == {"fallback": False}
    assert ab.run(["--replay", str(tmp_path / "first" / "ab.json"), "--storage", str(tmp_path), "--name", "again"]) == 0
    assert "every figure matches" in capsys.readouterr().out
    again = json.loads((tmp_path / "again" / "ab.json").read_text())
    assert again["effects"] == record["effects"] and again["settings"] == settings
    # a record whose figures are not what its settings give is caught
    record["effects"]["sticky"][ab.PRIMARY]["diff"] += 0.01
    (tmp_path / "edited.json").write_text(json.dumps(record))
    assert ab.run(["--replay", str(tmp_path / "edited.json"), "--storage", str(tmp_path), "--name", "third"]) == 1
    assert "REPLAY DIFFERS" in capsys.readouterr().out


def test_a_paired_arm_identical_on_every_user_says_so_rather_than_printing_nan():
    """A served arm against its in-process self (the recorded 10k-user HTTP run): var(t - c) = 0."""
    effect = {"relative": 0.0, "rel_low": 0.0, "rel_high": 0.0, "p_adj": 1.0, "significant": False}
    assert "nan" not in ab.effect_text({**effect, "pairing": math.nan})
    assert "identical on every user" in ab.effect_text({**effect, "pairing": math.nan})
    assert "1.50x smaller than split" in ab.effect_text({**effect, "pairing": 1.5})


def _recorded(**changes) -> dict:
    """An ab.json's settings and commit as run() writes them, with `changes` (None: the key removed)."""
    settings = {"users": 300, "seed": 3, "salt": "s", "design": "split", "alpha": 0.05, "looks": 1, "power": 0.8,
                "log_users": 300, "log_seed": 101, "cuped": False, "mde": None, "set": [],
                "arms": [{"spec": "random"}, {"spec": "sticky"}]}  # fmt: skip
    record = {"settings": settings, "commit": "abc"}
    for key, value in changes.items():
        where = record if key == "commit" else settings
        if value is None:
            del where[key]
        else:
            where[key] = value
    return record


@pytest.mark.parametrize(
    "content, problem",
    [
        (None, "cannot read it (No such file or directory)"),
        ("{not json", "not JSON (Expecting property name"),
        ([1, 2], "a JSON list, not an object"),
        ({"commit": "abc"}, 'no "settings" object'),
        (_recorded(commit=None), "records no commit"),
        (_recorded(seed=None, salt=None), "records no settings.seed, settings.salt"),
        (_recorded(users="300"), "settings.users is '300', not a int"),
        (_recorded(cuped=1), "settings.cuped is 1, not a bool"),
        (_recorded(arms=["random"]), 'settings.arms is not a list of {"spec": ARM, ...}'),
    ],
)
def test_replay_of_a_bad_record_is_one_line_naming_the_file(tmp_path, capsys, content, problem):
    """Without the checks these were a KeyError (no commit) or a TypeError (a list) traceback."""
    path = tmp_path / "ab.json"
    if content is not None:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    code = ab.run(["--replay", str(path), "--storage", str(tmp_path), "--name", "again"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith(f"error: --replay {path}: "), err
    assert problem in err and "name an ab.json written by python -m platform.ab" in err, err
    assert not (tmp_path / "again").exists()


def _experiment(rng, design: str, users: int, lift: float, mean: float = 2.0) -> ab_stats.Sample:
    """One simulated A/B of a per-user outcome: a user's level ~ N(mean, 1) plus N(0, 0.6^2) noise per
    arm, the treatment adding lift x mean. Paired: the same users in both arms (correlation 0.74, so
    var(t - c) is 3.8x smaller than var(t) + var(c)); split: other users in each arm."""
    level = rng.normal(mean, 1.0, (2, users))
    control = level[0] + rng.normal(0, 0.6, users)
    treatment = level[0 if design == ab_stats.PAIRED else 1] + lift * mean + rng.normal(0, 0.6, users)
    return ab_stats.Sample(treatment, control)


@pytest.mark.parametrize("design", ab_stats.DESIGNS)
def test_the_mde_at_power_80_is_detected_80_percent_of_the_time(design):
    """Power by simulation: the lift mde() gives for 200 users per arm at power 0.8 (from the variance
    compare() measures on a pilot) planted in 1,000 simulated A/Bs is detected in 80% of them within
    the binomial 99.9% range, and a zero lift in alpha of them. A design whose variance were wrong
    (paired analysed with var(t) + var(c), split with var(t) alone) lands far outside (about 95% and
    50%)."""
    from scipy import stats

    rng, alpha, power, users, runs = np.random.default_rng(0), 0.05, 0.8, 200, 1_000
    pilot = ab_stats.compare(_experiment(rng, design, 50_000, 0.0), alpha, design)
    lift = ab_stats.mde(pilot["unit_var"], pilot["control_mean"], users, alpha, power)
    assert 0.05 < lift < 0.25
    for planted, rate in ((lift, power), (0.0, alpha)):
        hits = sum(ab_stats.compare(_experiment(rng, design, users, planted), alpha, design)["p"] < alpha
                   for _ in range(runs))  # fmt: skip
        low, high = stats.binom.interval(0.999, runs, rate)
        assert low <= hits <= high, (design, planted, hits, (low, high))


@pytest.mark.parametrize("design", ab_stats.DESIGNS)
def test_aa_runs_report_each_runs_cuped_variance_reduction_as_the_ab_does(design):
    """bench/music_aa.py prints the mean of these: each the ratio the A/B itself reports per run."""
    users = 200 if design == ab_stats.SPLIT else 100
    calibration = ab.aa_runs(design, 3, users, cuped=True)
    arms = {"a": music_arms.Random(), "b": music_arms.Random(stream=1)}
    first = ab.run_ab(music.MusicConfig(), arms, users, 10_000, "aa0", 0.05, design, cuped=True)
    assert calibration["cuped"].shape == (3,) and calibration["cuped"][0] == first["effects"]["b"][ab.PRIMARY]["cuped"]
    assert calibration["cuped"].mean() > 1
    assert np.isnan(ab.aa_runs(design, 1, users)["cuped"]).all()  # without CUPED: none to report
