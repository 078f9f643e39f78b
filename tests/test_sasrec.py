"""SASRec: the training windows, what the scores may read, early stopping and checkpoints (no Ray)."""

import json

import numpy as np
import optuna
import pytest
import torch

from platform.results import OPTUNA_DB
from platform.selection import TEST_FILE
from tests.conftest import run_cli
from trainables import metrics as m
from trainables.config import ConfigError
from trainables.recsys import protocol, sasrec
from trainables.recsys.transformer import Encoder, EncoderShape

SMALL = {"synthetic_users": 200, "synthetic_items": 60, "width": 16, "context_length": 8, "batch_size": 32}


def sequences(lengths: list[int], n_items: int = 50, seed: int = 0) -> protocol.Sequences:
    rng = np.random.default_rng(seed)
    width = max(lengths)
    items = np.full((len(lengths), width), -1, dtype=np.int64)
    for row, n in enumerate(lengths):
        items[row, :n] = rng.integers(0, n_items, n)
    return protocol.Sequences(items, np.zeros_like(items, dtype=np.float32), np.array(lengths), np.arange(len(lengths)))


def window_lists(train: protocol.Sequences, k: int, rng) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """One epoch's windows as (inputs, targets) arrays, IGNORE where a target carries no loss."""
    windows = sasrec.epoch_windows(train, k, rng)
    inputs, targets = [], []
    for w in range(len(windows.start)):
        at, real, known = (a[0] for a in windows.batch(np.array([w])))
        assert real.all()  # a batch of one has no padding
        inputs.append(train.flat_items[at])
        targets.append(np.where(known, train.flat_items[at + 1], sasrec.IGNORE))
    return inputs, targets


@pytest.mark.parametrize("k", [1, 3, 8])
def test_an_epoch_predicts_every_next_item_once_from_what_precedes_it(k):
    train = sequences([1, 2, 5, 8, 9, 30, 31])
    for seed in range(3):
        inputs, targets = window_lists(train, k, np.random.default_rng(seed))
        predicted = {}
        for row_in, row_out in zip(inputs, targets):
            assert 1 <= len(row_in) <= k and len(row_out) == len(row_in)
            for t, target in enumerate(row_out):
                if target != sasrec.IGNORE:
                    # find the history this window came from: its inputs are the steps before the target
                    predicted.setdefault(tuple(row_in[: t + 1]), []).append(int(target))
        trained = sum(len(v) for v in predicted.values())
        assert trained == sum(max(n - 1, 0) for n in train.lengths)
    # every (history, step) target once: count per history via a direct walk
    inputs, targets = window_lists(train, k, np.random.default_rng(0))
    real = sum(int((t != sasrec.IGNORE).sum()) for t in targets)
    assert real == sum(max(n - 1, 0) for n in train.lengths)


def test_each_target_sees_the_items_just_before_it():
    train = sequences([40])
    history = train.items[0]
    inputs, targets = window_lists(train, 6, np.random.default_rng(1))
    steps = []
    for row_in, row_out in zip(inputs, targets):
        start = next(s for s in range(len(history)) if np.array_equal(history[s : s + len(row_in)], row_in))
        for t, target in enumerate(row_out):
            if target != sasrec.IGNORE:
                assert target == history[start + t + 1]
                steps.append(start + t + 1)
    assert sorted(steps) == list(range(1, 40))


def test_window_boundaries_move_between_epochs():
    train = sequences([60])
    rng = np.random.default_rng(0)
    shapes = {tuple(sasrec.epoch_windows(train, 8, rng).length) for _ in range(10)}
    assert len(shapes) > 1


def test_padding_and_the_future_never_reach_a_position():
    torch.manual_seed(0)
    encoder = Encoder(EncoderShape(20, 8, 2, 2, 16), dropout=0.0, attention_dropout=0.0).eval()
    seq = torch.tensor([[3, 5, 7, 20, 20, 20]])  # 20 = padding
    other = torch.tensor([[3, 5, 7, 1, 2, 20]])  # same prefix, different future
    with torch.no_grad():
        a, b = encoder(seq), encoder(other)
        short = encoder(seq[:, :3])
    torch.testing.assert_close(a[:, :3], b[:, :3])
    torch.testing.assert_close(a[:, :3], short)
    assert not torch.allclose(a[:, 3], b[:, 3])


def trained(**overrides) -> sasrec.SASRecTrainable:
    return sasrec.SASRecTrainable(config={**SMALL, "torch_threads": 1, **overrides})


@pytest.mark.slow  # trains on generated data: tens of seconds
def test_scores_read_only_the_last_context_length_items():
    model = trained(iterations=1)
    context = model.split.valid.context.rows(np.arange(5))
    assert (context.lengths > 10).all()
    base = model.scores(context)
    older = context.items.copy()
    older[:, 0] = (older[:, 0] + 1) % model.n_items  # outside the last 8 items
    np.testing.assert_array_equal(
        base, model.scores(protocol.Sequences(older, context.ratings, context.lengths, context.users))
    )
    recent = context.items.copy()
    recent[np.arange(5), context.lengths - 1] = (recent[np.arange(5), context.lengths - 1] + 1) % model.n_items
    assert not np.allclose(
        base, model.scores(protocol.Sequences(recent, context.ratings, context.lengths, context.users))
    )


@pytest.mark.slow  # trains on generated data: tens of seconds
def test_popularity_correction_is_an_explicit_option_starting_at_zero():
    assert sasrec.SASRecConfig().popularity_correction == 0.0
    plain, corrected = trained(iterations=1), trained(iterations=1, popularity_correction=1.0)
    context = plain.split.valid.context.rows(np.arange(4))
    difference = plain.scores(context) - corrected.scores(context)
    expected = np.broadcast_to(plain.log_popularity.numpy(), difference.shape)
    np.testing.assert_allclose(difference, expected, atol=1e-4)


@pytest.mark.slow  # trains on generated data: tens of seconds
def test_training_stops_on_its_best_validation_epoch_and_keeps_those_weights():
    model = trained(iterations=40, patience=2, lr=0.02, epochs_per_iteration=1)
    history = []
    while not (history and history[-1]["done"]):
        history.append(model.train())
    ndcg = m.split_metric(m.VALID, m.NDCG)
    last, seen = history[-1], [r[ndcg] for r in history]
    assert len(history) < 40, "patience 2 at a high learning rate should stop early"
    best_epoch = last[m.BEST_EPOCH]
    assert last[m.TRAIN_EPOCHS] - best_epoch == 2  # stopped after `patience` epochs without progress
    # the last result is the best epoch's, and the restored weights reproduce it
    assert last[ndcg] == max(seen) == history[best_epoch - 1][ndcg]
    again = protocol.evaluate(model.scores, model.split.valid, model.split.vocabulary, m.VALID)
    assert again[ndcg] == pytest.approx(last[ndcg])


@pytest.mark.slow  # trains on generated data: tens of seconds
def test_a_checkpoint_restores_training_bit_for_bit(tmp_path):
    first = trained(iterations=50, patience=0)
    first.train()
    first.save_checkpoint(str(tmp_path))
    expected = first.train()
    second = trained(iterations=50, patience=0, seed=9)  # other weights until restored
    second.load_checkpoint(str(tmp_path))
    got = second.train()
    for key in (m.TRAIN_LOSS, m.SCORE, m.split_metric(m.VALID, m.HR)):
        assert got[key] == expected[key]


@pytest.mark.parametrize(
    "overrides, words",
    [
        ({"width": 30, "heads": 4}, "divisible"),
        ({"context_length": 1}, "context_length"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_bad_settings_are_one_clear_error(overrides, words):
    with pytest.raises((ValueError, ConfigError), match=words):
        sasrec.parse(overrides)


@pytest.mark.slow
def test_the_default_search_tunes_and_measures_the_selected_epoch_once(ray_session, tmp_path, capsys):
    """`python -m platform.tune sasrec`: Optuna over the one space, each trial early-stopped, the
    selected trial's best epoch measured once on test."""
    argv = ["sasrec", "--budget", "smoke", "--samples", "1", "--storage", str(tmp_path), "--name", "sas"]
    code, out, _ = run_cli(capsys, *argv)
    assert code == 0 and "Best trial:" in out
    study = optuna.load_study(study_name="sas", storage=f"sqlite:///{tmp_path / 'sas' / OPTUNA_DB}")
    assert len(study.trials) == 1 and {"context_length", "lr"} <= set(study.trials[0].params)
    (measured,) = json.loads((tmp_path / "sas" / TEST_FILE).read_text())
    assert 0.0 <= measured[m.split_metric(m.TEST, m.HR)] <= 1.0
    assert measured[m.split_metric(m.TEST, m.USERS)] > 0


def test_min_target_rating_trains_only_on_liked_next_items():
    """An epoch trains every next item once; with min_target_rating=4 exactly those rated >= 4."""
    every, liked = trained(iterations=1), trained(iterations=1, min_target_rating=4.0)
    train = every.split.train
    later = train.position() >= 1  # (N,) entries that are some earlier item's next item
    assert every.train_epoch()[1] == int(later.sum())
    assert liked.train_epoch()[1] == int((later & (train.flat_ratings >= 4)).sum()) < int(later.sum())
    with pytest.raises(ValueError, match="min_target_rating"):
        sasrec.parse({"min_target_rating": -1})
