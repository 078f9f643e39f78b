"""`python -m platform.compare`: every recommender tuned on one split, test figures over seeds."""

import json
import shutil

import numpy as np
import pytest

from platform import compare, returns, tune
from platform import results as recorded
from trainables import metrics as m
from trainables.recsys import protocol, ratings


def movielens_file(path):
    """A MovieLens-format ratings.csv written from generated histories (users bring the real one)."""
    data = ratings.synthetic(ratings.SyntheticSpec(n_users=200, n_items=80, min_len=10, max_len=30, seed=5))
    rows = zip(data.users, data.items, data.ratings, data.timesteps)
    path.write_text("userId,movieId,rating,timestamp\n" + "".join(f"{u},{i},{r:g},{1000 + t}\n" for u, i, r, t in rows))
    return path


@pytest.mark.slow
def test_compare_tunes_each_model_and_reports_paired_intervals(ray_session, tmp_path, capsys):
    """Issue 9, problem 4: baselines are models of the platform, each tuned by its own search on
    the same split and seeds, and one command prints validation and test figures with intervals;
    here on a MovieLens-format file (leave-one-out, NDCG@10 the primary figure)."""
    data = movielens_file(tmp_path / "ratings.csv")
    argv = ["dt", "ease", "popularity", "--seeds", "2", "--budget", "smoke", "--set", f"data={data}"]
    code = compare.run([*argv, "--storage", str(tmp_path), "--name", "cmp"])
    out = capsys.readouterr().out
    assert code == 0
    root = tmp_path / "cmp"
    report = json.loads((root / "comparison.json").read_text())
    assert report["primary"] == m.split_metric(m.TEST, m.NDCG)
    for model in ("dt", "ease", "popularity"):
        runs = report["runs"][model]
        assert sorted(r["seed"] for r in runs) == [0, 1]
        for seed in (0, 1):
            experiment = root / f"{model}-seed{seed}"
            assert (experiment / "test.json").exists()  # measured once, on the selected trial
        assert f"| {model} | 2 |" in out
    # EASE was searched (its smoke budget: 3 Optuna trials per seed), popularity has nothing to tune.
    assert len([p for p in (root / "ease-seed0").iterdir() if p.name.startswith("ease_")]) == 3
    assert len([p for p in (root / "popularity-seed0").iterdir() if p.name.startswith("popularity_")]) == 1
    # The paired difference against the first model (dt) is the per-seed difference, averaged.
    ease = {r["seed"]: r[report["primary"]] for r in report["runs"]["ease"]}
    dt = {r["seed"]: r[report["primary"]] for r in report["runs"]["dt"]}
    paired = report["models"]["ease"]["paired_difference"]
    assert paired["mean"] == pytest.approx(sum(ease[s] - dt[s] for s in (0, 1)) / 2)
    assert paired["low"] < paired["mean"] < paired["high"] or paired["low"] == paired["high"]
    assert (root / "comparison.md").read_text().count("\n| ") == 4 + 3  # header + 3 models; differences: + 2
    for model in ("dt", "ease", "popularity"):  # each experiment's wall seconds, from what Tune recorded
        wall = report["models"][model][recorded.WALL_SECONDS]
        assert sorted(wall["per_seed"]) == ["0", "1"] and wall["total"] == sum(wall["per_seed"].values()) >= 0
    assert report["models"]["dt"][recorded.WALL_SECONDS]["total"] > 0
    # ... and the per-user difference over both seeds and their test users, from each test.json
    per_user = m.split_metric(m.TEST, m.PER_USER)
    selected = {
        (model, seed): json.loads((root / f"{model}-seed{seed}" / "test.json").read_text())[0][per_user]
        for model in ("dt", "ease")
        for seed in (0, 1)
    }
    users = report["models"]["ease"]["user_differences"][m.split_metric(m.TEST, m.NDCG)]
    assert users["seeds"] == 2 and users["users"] == sum(len(selected["dt", s][m.USERS]) for s in (0, 1))
    by_seed = [np.subtract(selected["ease", s][m.NDCG], selected["dt", s][m.NDCG]).mean() for s in (0, 1)]
    assert users["mean"] == pytest.approx(np.mean(by_seed), abs=1e-5)
    # one fixed split: both seeds measured the same users, drawn once for both seeds in the bootstrap
    assert selected["dt", 0][m.USERS] == selected["dt", 1][m.USERS] and "one user draw shared" in users["method"]
    assert per_user not in report["runs"]["ease"][0]  # the lists stay in test.json
    liked = report["models"]["ease"]["user_differences"][m.split_metric(m.TEST, m.LIKED + m.NDCG)]  # liked targets
    assert 0 < liked["users"] < users["users"]
    # Interrupted after everything but popularity's second seed: the rerun reads the rest back.
    (root / "comparison.json").unlink()
    shutil.rmtree(root / "popularity-seed1")
    assert compare.run([*argv, "--storage", str(tmp_path), "--name", "cmp"]) == 0
    out = capsys.readouterr().out
    assert out.count("measured before, read back") == 5 and "popularity (seed 1): measured before" not in out
    again = json.loads((root / "comparison.json").read_text())
    assert again["runs"]["dt"] == report["runs"]["dt"] and again["models"]["ease"] == report["models"]["ease"]
    assert (root / "popularity-seed1" / "test.json").exists()
    # platform.returns restores each seed's selected DT and re-measures it on test at other targets:
    # at the trials' own (selected) target it reproduces their test HR@10 exactly.
    assert returns.run([str(root), "--reference", "ease", "--targets", "0.6,1.0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in lines if line.startswith("| ")}
    assert {"ease", "dt, 0.6", "dt, 1", "ease + rating prior, lambda 4"} <= set(rows)
    # the reference given the DT's rating information, and both tuned for liked items on validation
    tuned = next(label for label in rows if label.startswith("ease + rating prior, tuned for liked"))
    assert {float(x) for x in tuned.split("(")[1].rstrip(")").split(", ")} <= {0, 0.25, 0.5, 1, 2, 4}
    assert any(label.startswith("dt, tuned for liked") for label in rows) and "dt - reference + prior" in rows
    selected = next(cells for label, cells in rows.items() if label.startswith("dt, as selected"))
    assert float(selected[1]) == pytest.approx(
        np.mean([r[m.split_metric(m.TEST, m.HR)] for r in report["runs"]["dt"]]), abs=1e-4
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["dt", "dqn"], "dt and dqn are measured on different things"),
        (["dt", "ppo"], "ppo measures no test figures"),
        (["dt", "nope"], "unknown model 'nope'"),
        (["dt", "--set", "width_x=3"], "no model among dt has the key 'width_x'"),
        (["dt", "--seeds", "0"], "--seeds must be >= 1"),
    ],
)
def test_bad_compare_arguments_are_one_line(tmp_path, capsys, argv, message):
    assert compare.run([*argv, "--storage", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not list(tmp_path.iterdir())  # nothing was written


def run_row(seed: int, ndcg: list[float], users: list[int] | None = None, mrr: list[float] | None = None) -> dict:
    """One selected trial's test figures as compare collects them (no Ray: the table alone);
    `mrr` None: a test.json written before per-user MRR was recorded."""
    users = list(range(len(ndcg))) if users is None else users
    per_user = {m.USERS: users, m.HR: [int(v > 0) for v in ndcg], m.NDCG: ndcg}
    if mrr is not None:
        per_user[m.MRR] = mrr
    return {
        "seed": seed,
        m.SCORE: 0.1,
        m.split_metric(m.TEST, m.NDCG): sum(ndcg) / len(ndcg),
        m.split_metric(m.TEST, m.PER_USER): per_user,
        recorded.WALL_SECONDS: 10.0 + seed,
        recorded.TRIAL_SECONDS: 30.0 + seed,
    }


def test_differences_are_paired_over_test_users_and_one_seed_has_no_seed_interval():
    rng = np.random.default_rng(0)
    ref = rng.uniform(0, 1, 400).round(3).tolist()
    better = [min(1.0, v + 0.05) for v in ref]
    text, figures = compare.table({"ref": [run_row(0, ref)], "better": [run_row(0, better)]}, "ref")
    row = next(line for line in text.splitlines() if line.startswith("| better"))
    assert "[n/a: one value]" in row  # across seeds: one seed has no interval, and says so
    users = figures["models"]["better"]["user_differences"][m.split_metric(m.TEST, m.NDCG)]
    expected = float(np.mean(np.array(better) - np.array(ref)))
    assert users["mean"] == pytest.approx(expected)
    assert users["low"] < expected < users["high"] and users["high"] - users["low"] < 0.02  # paired: tight
    assert users["users"] == 400 and "bootstrap" in users["method"]


def test_seeds_that_measured_different_users_are_not_paired():
    a, b = run_row(0, [0.5, 0.0, 1.0]), run_row(0, [0.5, 0.5, 0.5], users=[3, 4, 5])
    text, figures = compare.table({"ref": [a], "other": [b]}, "ref")
    assert "n/a: no seed with the same test users" in text
    differences = figures["models"]["other"]["user_differences"]
    assert all("unavailable" in d and "mean" not in d for d in differences.values())


@pytest.mark.parametrize(
    ("settings", "varies"),
    [
        ({}, True),  # generated data: data_seed draws it
        ({"data": "r.csv", "split": "users"}, True),  # the user split is drawn
        ({"data": "r.csv", "user_fraction": 0.5}, True),  # so is the user subsample
        ({"data": "r.csv"}, False),  # auto on a file: leave-one-out, fixed by the data
        ({"data": "r.csv", "split": "loo"}, False),
        ({"data": "r.csv", "split": "time"}, False),
    ],
)
def test_vary_data_matters_only_where_data_seed_decides_the_data(settings, varies):
    assert tune.varies_data(protocol.DataConfig(**settings)) is varies


def test_vary_data_on_a_fixed_split_says_so_while_planning(tmp_path, capsys):
    """Before Ray starts (in the plans), not after runs that varied less than asked."""
    data = movielens_file(tmp_path / "ratings.csv")
    argv = ["popularity", "--seeds", "2", "--vary-data", "--budget", "smoke", "--storage", str(tmp_path / "out")]
    compare.plans(compare.parser().parse_args([*argv, "--set", f"data={data}"]))
    assert capsys.readouterr().out.count(tune.VARY_DATA_NOTICE) == 1
    compare.plans(compare.parser().parse_args([*argv, "--set", f"data={data}", "--set", "split=users"]))
    assert tune.VARY_DATA_NOTICE not in capsys.readouterr().out


def test_hr_and_mrr_differences_are_paired_over_seeds_and_users_too():
    """Every per-user figure test.json holds gets the (seeds x users) interval, not only NDCG@10;
    one fixed split (the same users in both seeds): the crossed bootstrap."""
    rng = np.random.default_rng(1)
    rows: dict[str, list[dict]] = {"ref": [], "other": []}
    for seed in (0, 1):
        ndcg = rng.uniform(0, 1, 300).round(3).tolist()
        mrr = rng.uniform(0, 1, 300).round(3).tolist()
        rows["ref"].append(run_row(seed, ndcg, mrr=mrr))
        # other: one hit more per 10 users (HR), MRR 0.1 higher on every user
        rows["other"].append(
            run_row(seed, [0.5 if u % 10 == 0 else v for u, v in enumerate(ndcg)], mrr=[v + 0.1 for v in mrr])
        )
    text, figures = compare.table(rows, "ref")
    found = figures["models"]["other"]["user_differences"]
    hr, mrr = found[m.split_metric(m.TEST, m.HR)], found[m.split_metric(m.TEST, m.MRR)]
    expected_hr = np.mean(
        [
            np.subtract(*(r[m.split_metric(m.TEST, m.PER_USER)][m.HR] for r in (o, f)))
            for o, f in zip(rows["other"], rows["ref"])
        ]
    )
    assert hr["mean"] == pytest.approx(expected_hr) and hr["low"] <= hr["mean"] <= hr["high"] and hr["users"] == 600
    assert mrr["mean"] == pytest.approx(0.1) and mrr["high"] - mrr["low"] < 1e-9  # a constant difference
    assert "one user draw shared" in mrr["method"] and mrr["seeds"] == 2
    # a second table holds the differences; each has a column
    first, _, second = text.partition("Differences against ref:")
    assert "(seeds x users)" not in first and second.count("(seeds x users)") == 4
    row = next(line for line in second.splitlines() if line.startswith("| other"))
    assert f"{mrr['mean']:+.4f}" in row and f"{hr['mean']:+.4f}" in row
    # wall seconds: summed over the seeds, each seed's kept
    wall = figures["models"]["other"][recorded.WALL_SECONDS]
    assert wall["total"] == 21.0 and wall["per_seed"] == {0: 10.0, 1: 11.0}
    assert wall["trial_s_per_seed"] == {0: 30.0, 1: 31.0}
    assert next(line for line in first.splitlines() if line.startswith("| other")).endswith(" 21 |")


def test_a_test_json_without_per_user_mrr_says_it_cannot_be_computed():
    ref, other = run_row(0, [0.5, 0.0, 1.0]), run_row(0, [1.0, 0.0, 1.0])  # written before MRR per user
    text, figures = compare.table({"ref": [ref], "other": [other]}, "ref")
    found = figures["models"]["other"]["user_differences"]
    assert "not in test.json" in found[m.split_metric(m.TEST, m.MRR)]["unavailable"]
    assert found[m.split_metric(m.TEST, m.NDCG)]["mean"] == pytest.approx(0.5 / 3)  # the others still are
    assert "n/a: per-user mrr not in test.json" in text


def test_wall_seconds_span_the_trials_iterations():
    """From the first iteration's start to the last report: parallel trials count once."""
    import pandas as pd

    a = pd.DataFrame({recorded.TIMESTAMP: [105, 110], recorded.ITERATION_SECONDS: [5.0, 5.0]})  # 100..110
    b = pd.DataFrame({recorded.TIMESTAMP: [104, 120], recorded.ITERATION_SECONDS: [2.0, 3.0]})  # 102..120
    got = recorded.frame_seconds([a, b, pd.DataFrame()])
    assert got == {recorded.WALL_SECONDS: 20.0, recorded.TRIAL_SECONDS: 15.0}
    assert np.isnan(recorded.frame_seconds([pd.DataFrame({"x": [1]})])[recorded.WALL_SECONDS])


def test_help_and_docs_describe_both_bootstraps_the_table_uses():
    """A fixed split (every seed the same users) is bootstrapped crossed, one user draw for all the
    seeds (stats.CROSSED_METHOD); only a split per seed draws users inside each seed."""
    from pathlib import Path

    docs = (Path(__file__).parents[1] / "docs" / "recommenders.md").read_text()
    for text in (compare.__doc__, docs):
        text = " ".join(text.split())
        assert "resamples seeds and, inside each" not in text
        assert "crossed" in text and "each drawn seed draws its own users" in text
        assert "HR@10, NDCG@10, MRR and liked NDCG@10 over seeds" in text
