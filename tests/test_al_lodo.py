"""The learned active-learning policy judged on its own (platform/al_lodo.py): candidate sampling
that does not hand it margin's ranking, leave-one-dataset-out testing, resuming, and intervals
that cover training seeds and test splits together."""

import dataclasses
import json

import numpy as np
import pytest

from envs import active
from platform import al_lodo
from trainables.active import benchmark
from trainables.active import policy as learned
from trainables.config import ConfigError

TINY = {"budget": 10, "start": 6, "batch": 5, "iterations": 1, "episodes_per_iteration": 1, "valid_seeds": 1,
        "hidden": 8, "torch_threads": 1}  # fmt: skip


def test_uniform_candidates_are_not_margins_top_half():
    cfg = active.ActiveConfig(dataset="digits", start=20)
    learner = active.Learner(cfg, 0)
    top = set(learner.margin_order()[~learner.labelled[learner.margin_order()]][: cfg.candidates // 2].tolist())
    rng = np.random.default_rng(0)
    half = active.draw_candidates(learner, np.array([], int), cfg.candidates, rng)
    assert top <= set(half.tolist())  # margin_half hands the policy margin's top 16, always
    uniform = dataclasses.replace(cfg, candidate_sampling="uniform")
    learner.cfg = uniform
    overlaps, ranks = [], []
    rank = np.empty(len(learner.xp), int)
    rank[learner.margin_order()] = np.arange(len(learner.xp))
    for _ in range(30):
        drawn = active.draw_candidates(learner, np.array([], int), cfg.candidates, rng)
        assert len(set(drawn.tolist())) == cfg.candidates and not learner.labelled[drawn].any()
        overlaps.append(len(top & set(drawn.tolist())))
        ranks.append(rank[drawn].mean())
    # at random, about 16 x 32 / 980 = 0.5 of the top 16 are offered, and the margin ranks are central
    assert np.mean(overlaps) < 2 and 350 < np.mean(ranks) < 650


def test_a_bad_candidate_sampling_is_one_line():
    for parse in (active.parse, learned.parse):
        with pytest.raises(ConfigError) as err:
            parse({"candidate_sampling": "top"})
        assert "candidate_sampling must be one of margin_half, uniform, got 'top'" in str(err.value)
        assert "\n" not in str(err.value)


def test_distance_features_use_the_models_embedding():
    logreg = active.Learner(active.ActiveConfig(dataset="iris", start=6), 1)
    assert logreg.embedding_scale() == logreg.geometry["scale"]  # inputs are the embedding: as before
    mlp = active.Learner(active.ActiveConfig(dataset="iris", start=6, classifier="mlp"), 1)
    emb, cands = mlp.embedding(), np.arange(10)
    feats = active.candidate_features(mlp, cands, np.array([20]))
    to_labelled = mlp.distance_to(mlp.labelled, emb)[cands] / (4 * mlp.embedding_scale())
    assert np.allclose(feats[:, 3], np.minimum(to_labelled, 1), atol=1e-6)
    to_pick = np.sqrt(((emb[cands] - emb[20]) ** 2).sum(1)) / (4 * mlp.embedding_scale())
    assert np.allclose(feats[:, 4], np.minimum(to_pick, 1), atol=1e-6)
    inputs = mlp.distance_to(mlp.labelled)[cands] / (4 * mlp.geometry["scale"])
    assert not np.allclose(feats[:, 3], np.minimum(inputs, 1), atol=1e-3)


def test_a_policy_is_tested_only_on_a_dataset_it_never_trained_on(tmp_path):
    config = {**TINY, "train_datasets": "iris,wine", "held_out": "breast_cancer", "prior": 0.0,
              "candidate_sampling": "uniform"}  # fmt: skip
    trained = benchmark.train_policy(config, str(tmp_path / "p"))
    assert trained["episodes"] == 1 and (tmp_path / "p" / "state.pt").exists()
    env = dataclasses.asdict(active.ActiveConfig(dataset="iris", batch=5, budget=10, start=6))
    with pytest.raises(ValueError, match="was trained on iris"):
        benchmark.evaluate_policy(str(tmp_path / "p"), env, [20_000])
    held = {**env, "dataset": "breast_cancer", "candidate_sampling": "uniform"}
    tested = benchmark.evaluate_policy(str(tmp_path / "p"), held, [20_000, 20_001])
    assert len(tested["aulc"]) == 2 and sum(tested["decision_counts"]) == 2 * 10  # every pick recorded
    # the driver never plans a test on a training dataset either
    args = al_lodo.parser().parse_args(["--datasets", "iris,wine", "--train", "iris,wine,breast_cancer"])
    trains, _ = al_lodo.plan(args)
    for unit in trains:
        assert unit["config"]["held_out"] not in unit["config"]["train_datasets"].split(",")
        assert all(t["dataset"] == unit["config"]["held_out"] for t in al_lodo.tests_of(unit, [1, 10]))


def test_a_resumed_run_trains_nothing_twice():
    args = al_lodo.parser().parse_args(["--datasets", "iris,wine", "--train", "iris,wine,breast_cancer",
                                        "--k", "5,10", "--sampling", "uniform", "--priors", "0"])  # fmt: skip
    trains, refs = al_lodo.plan(args)
    assert len(trains) == 2 * 3 and len(refs) == 2 * 2 * 2  # datasets x seeds; datasets x references x K
    first = trains[0]
    done = {al_lodo.key(first): {"checkpoint": "/saved/p"}, al_lodo.key(refs[0]): {}}
    tested = al_lodo.tests_of(first, [5, 10])[0]
    done[al_lodo.key(tested)] = {}
    left_refs, tests, untrained = al_lodo.missing(trains, refs, done, [5, 10])
    assert first not in untrained and len(untrained) == len(trains) - 1
    assert tests == [(al_lodo.tests_of(first, [5, 10])[1], "/saved/p")]  # its missing test, on its network
    assert refs[0] not in left_refs and len(left_refs) == len(refs) - 1


def test_the_interval_covers_training_seeds_as_well_as_splits():
    rng = np.random.default_rng(0)
    reference = rng.uniform(0.8, 0.9, 20).tolist()
    splits = np.asarray(reference) + 0.01 + rng.normal(0, 0.005, 20)
    same = {s: (splits + rng.normal(0, 0.001, 20)).tolist() for s in range(3)}
    spread = {s: (np.asarray(same[s]) + shift).tolist() for s, shift in zip(range(3), (-0.02, 0.0, 0.02))}
    mean, low, high = al_lodo.compare(same, reference)
    assert mean == pytest.approx(0.01, abs=0.003) and low > 0
    _, low_s, high_s = al_lodo.compare(spread, reference)
    assert high_s - low_s > 3 * (high - low) and low_s < 0  # seed-to-seed variation is in the interval
    # three seeds with the very same picks know no more about the splits than one seed does
    _, low_1, high_1 = al_lodo.compare({0: same[0]}, reference)
    _, low_3, high_3 = al_lodo.compare({s: same[0] for s in range(3)}, reference)
    assert high_3 - low_3 == pytest.approx(high_1 - low_1, rel=0.15)


def test_the_report_counts_a_win_only_against_both_references(tmp_path):
    splits = [0.80, 0.82, 0.84, 0.86]
    units = [
        {"kind": "ref", "dataset": d, "k": 10, "strategy": s, "aulc": [a + off for a in splits]}
        for d in ("iris", "wine")
        for s, off in (("margin", 0.0), ("badge", 0.02 if d == "wine" else -0.01))
    ]
    for d in ("iris", "wine"):
        for seed in range(3):
            units.append({"kind": "policy", "dataset": d, "prior": 5.0, "sampling": "uniform", "seed": seed, "k": 10,
                          "aulc": [a + 0.01 + 0.001 * seed for a in splits],
                          "decision_sums": [[1.0] * 8] * 5, "decision_counts": [2] * 5})  # fmt: skip
    for d, seed, moved in (("iris", 0, 0.0), ("iris", 1, 0.02), ("wine", 0, -0.01)):
        units.append({"kind": "train", "config": {"prior": 5.0, "candidate_sampling": "uniform", "held_out": d,
                      "seed": seed}, "valid_minus_margin": moved, "seconds": 1.0, "episodes": 4})  # fmt: skip
    (tmp_path / "units.jsonl").write_text("".join(json.dumps(u) + "\n" for u in units))
    text = al_lodo.render(tmp_path)
    # iris: a win; wine: BADGE is above it, by bootstrap and by t over seeds
    assert "| 5 | uniform | 10 | 2 | 1 | 0 | 1 | 1 | yes |" in text
    assert "| 5 | uniform | 3 | +0.0033 [-0.0100, +0.0200] | 1 |" in text  # did training move it?
    assert "-0.0090* [-0.0115, -0.0065] (badge)" in text  # wine, t over 3 seeds: -0.010, -0.009, -0.008
    assert "Unfinished" in text and (tmp_path / "decisions_p5_uniform_k10.png").stat().st_size > 1000


@pytest.mark.slow
def test_lodo_runs_resumes_and_refuses_bad_input(ray_session, tmp_path, capsys):
    argv = ["--datasets", "iris", "--train", "iris,wine", "--seeds", "2", "--splits", "2", "--k", "5",
            "--train-k", "5", "--budget", "10", "--start", "6", "--iterations", "1", "--priors", "0,5",
            "--sampling", "uniform", "--storage", str(tmp_path), "--name", "l"]  # fmt: skip
    assert al_lodo.run(argv) == 0
    folder = tmp_path / "l"
    lines = (folder / "units.jsonl").read_text().splitlines()
    assert len(lines) == 2 * 2 * 2 + 2  # (train + test) x seeds x priors + margin and BADGE
    # a stop after the first units: the rerun runs only the rest
    (folder / "lodo.json").unlink()
    (folder / "units.jsonl").write_text("\n".join(lines[:4]) + "\n")
    assert al_lodo.run(argv) == 0
    keys = [json.loads(line)["key"] for line in (folder / "units.jsonl").read_text().splitlines()]
    assert len(keys) == len(set(keys)) == len(lines)
    assert "(4 resumed)" in capsys.readouterr().err
    assert al_lodo.run([*argv[:-1], "other", "--sampling", "top"]) == 2
    assert al_lodo.run(argv) == 2  # a finished run is not run again
    (folder / "lodo.json").unlink()
    assert al_lodo.run([*argv[:-2], "--seeds", "3", "--name", "l"]) == 2  # settings changed under one name
    err = capsys.readouterr().err
    assert "unknown 'top'" in err and "already holds" in err and "other settings" in err
